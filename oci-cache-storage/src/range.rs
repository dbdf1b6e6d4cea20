//! Byte ranges of a blob, as a client can ask for them (RFC 9110 section 14.1.2).

/// A range of bytes requested from a blob, before the blob's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start..=end` (both inclusive, as in HTTP `bytes=start-end`).
    Bounded {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// From `start` to the end of the blob (`bytes=start-`).
    From {
        /// First byte.
        start: u64,
    },
    /// The last `len` bytes (`bytes=-len`).
    Suffix {
        /// Number of bytes from the end.
        len: u64,
    },
}

/// A range resolved against a blob's size: `start..end` with `end` exclusive, never empty
/// unless the blob itself is empty and no range was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ResolvedRange {
    /// The whole blob.
    pub fn full(size: u64) -> Self {
        Self {
            start: 0,
            end: size,
        }
    }

    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True when the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl ByteRange {
    /// Resolves the range against a blob of `size` bytes. `None` when it is not satisfiable
    /// (starts at or past the end, or a zero-length suffix); an end past the blob is clamped.
    pub fn resolve(self, size: u64) -> Option<ResolvedRange> {
        let (start, end) = match self {
            ByteRange::Bounded { start, end } if start <= end => (start, end.saturating_add(1)),
            ByteRange::From { start } => (start, size),
            ByteRange::Suffix { len } if len > 0 => (size.saturating_sub(len), size),
            ByteRange::Bounded { .. } | ByteRange::Suffix { .. } => return None,
        };
        (start < size).then(|| ResolvedRange {
            start,
            end: end.min(size),
        })
    }
}

/// Resolves an optional requested range against a blob of `size` bytes: no range is the
/// whole blob (even when empty); an unsatisfiable range is [`StorageError::RangeNotSatisfiable`].
pub(crate) fn resolve_request(
    range: Option<ByteRange>,
    size: u64,
) -> Result<ResolvedRange, crate::StorageError> {
    match range {
        None => Ok(ResolvedRange::full(size)),
        Some(r) => r
            .resolve(size)
            .ok_or(crate::StorageError::RangeNotSatisfiable { size }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_each_form() {
        let b = ByteRange::Bounded { start: 2, end: 5 };
        assert_eq!(b.resolve(10), Some(ResolvedRange { start: 2, end: 6 }));
        assert_eq!(b.resolve(4), Some(ResolvedRange { start: 2, end: 4 }));
        assert_eq!(
            ByteRange::From { start: 9 }.resolve(10),
            Some(ResolvedRange { start: 9, end: 10 })
        );
        assert_eq!(ByteRange::From { start: 10 }.resolve(10), None);
        assert_eq!(
            ByteRange::Suffix { len: 3 }.resolve(10),
            Some(ResolvedRange { start: 7, end: 10 })
        );
        assert_eq!(
            ByteRange::Suffix { len: 30 }.resolve(10),
            Some(ResolvedRange { start: 0, end: 10 })
        );
        assert_eq!(ByteRange::Suffix { len: 0 }.resolve(10), None);
        assert_eq!(ByteRange::Bounded { start: 5, end: 2 }.resolve(10), None);
        assert_eq!(ByteRange::From { start: 0 }.resolve(0), None);
    }
}
