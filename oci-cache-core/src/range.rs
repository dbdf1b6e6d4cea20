//! The HTTP `Range` request header, single ranges only (RFC 9110 section 14.2).
//! Multi-range requests are answered with the whole blob, which the RFC permits.

use oci_cache_storage::ByteRange;

/// Why a `Range` header was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not of the form `bytes=a-b`, `bytes=a-` or `bytes=-n`.
    #[error("malformed Range header")]
    Malformed,
}

/// Parses a `Range` header value. `Ok(None)` means "serve the whole blob" (several ranges,
/// which the cache does not split). Numbers must be plain decimal.
pub fn parse_range(value: &str) -> Result<Option<ByteRange>, RangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?
        .trim();
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let num = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RangeError::Malformed);
        }
        s.parse().map_err(|_| RangeError::Malformed)
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.is_empty(), last.is_empty()) {
        (true, true) => return Err(RangeError::Malformed),
        (true, false) => ByteRange::Suffix { len: num(last)? },
        (false, true) => ByteRange::From { start: num(first)? },
        (false, false) => {
            let (start, end) = (num(first)?, num(last)?);
            if end < start {
                return Err(RangeError::Malformed);
            }
            ByteRange::Bounded { start, end }
        }
    };
    Ok(Some(range))
}

/// Formats a range as a `Range` header value (the inverse of [`parse_range`]).
pub fn format_range(range: ByteRange) -> String {
    match range {
        ByteRange::Bounded { start, end } => format!("bytes={start}-{end}"),
        ByteRange::From { start } => format!("bytes={start}-"),
        ByteRange::Suffix { len } => format!("bytes=-{len}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            parse_range("bytes=0-99"),
            Ok(Some(ByteRange::Bounded { start: 0, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=100-"),
            Ok(Some(ByteRange::From { start: 100 }))
        );
        assert_eq!(
            parse_range("bytes=-5"),
            Ok(Some(ByteRange::Suffix { len: 5 }))
        );
        assert_eq!(parse_range("bytes=0-1,5-6"), Ok(None));
    }

    #[test]
    fn rejects_malformed() {
        for v in [
            "",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(v), Err(RangeError::Malformed), "{v}");
        }
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(a in 0u64..u64::MAX / 2, b in 0u64..u64::MAX / 2, kind in 0..3u8) {
            let r = match kind {
                0 => ByteRange::Bounded { start: a.min(b), end: a.max(b) },
                1 => ByteRange::From { start: a },
                _ => ByteRange::Suffix { len: b },
            };
            prop_assert_eq!(parse_range(&format_range(r)), Ok(Some(r)));
        }
    }
}
