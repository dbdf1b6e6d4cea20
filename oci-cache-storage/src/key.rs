//! Names for tag records that are safe as file names and object keys: every component of a
//! tag key keeps `[a-z0-9_-]` (and `.` after the first byte); anything else becomes `%XX`, so
//! no key can produce `..`, `/` or an empty component.

use sha2::{Digest as _, Sha256};

use crate::TagKey;

/// Encoded components longer than this are replaced by a hash, to stay under the usual
/// 255-byte file name limit.
const MAX_COMPONENT: usize = 200;

/// Encodes one key component as a file name (see the module documentation). The empty
/// string becomes `%`; a component whose encoding is too long becomes `%h` and its sha256.
pub(crate) fn encode(component: &str) -> String {
    if component.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(component.len());
    for (i, b) in component.bytes().enumerate() {
        let keep = b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b);
        if keep || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    if out.len() > MAX_COMPONENT {
        return format!("%h{}", hex::encode(Sha256::digest(component.as_bytes())));
    }
    out
}

/// The component [`encode`] made `name` from, unless it was hashed for length.
pub(crate) fn decode(name: &str) -> Option<String> {
    if name == "%" {
        return Some(String::new());
    }
    if name.starts_with("%h") {
        return None;
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The directory segments of a repository's tag records: namespace, repository segments,
/// `%tags`.
pub(crate) fn tags_dir_segments(namespace: &str, repository: &str) -> Vec<String> {
    let mut segments = vec![encode(namespace)];
    segments.extend(repository.split('/').map(encode));
    segments.push("%tags".to_owned());
    segments
}

/// The tag a record's file name (`<encoded tag>.json`) stands for, if it can be read back.
pub(crate) fn tag_of_file_name(name: &str) -> Option<String> {
    decode(name.strip_suffix(".json")?)
}

/// The path segments of a tag record: namespace, repository segments, `%tags`, `<tag>.json`.
pub(crate) fn tag_segments(key: &TagKey) -> Vec<String> {
    let mut segments = tags_dir_segments(&key.namespace, &key.repository);
    segments.push(format!("{}.json", encode(&key.tag)));
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_safe_names_and_escapes_the_rest() {
        assert_eq!(encode("library"), "library");
        assert_eq!(encode("v1.2_rc-3"), "v1.2_rc-3");
        assert_eq!(encode(".."), "%2E.");
        assert_eq!(encode("."), "%2E");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("Latest"), "%4Catest");
        assert_eq!(encode("%tags"), "%25tags");
        assert_eq!(encode(""), "%");
    }

    #[test]
    fn decode_reverses_encode() {
        for s in [
            "library",
            "v1.2_rc-3",
            "..",
            ".",
            "a/b",
            "Latest",
            "%tags",
            "",
            "@sha256:ab",
        ] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s), "{s}");
        }
        assert_eq!(
            decode(&encode(&"X".repeat(100))),
            None,
            "hashed names stay unread"
        );
        assert_eq!(tag_of_file_name("v1.json").as_deref(), Some("v1"));
    }

    #[test]
    fn encode_hashes_overlong_components() {
        let long = "X".repeat(100);
        let encoded = encode(&long);
        assert!(encoded.starts_with("%h"));
        assert_eq!(encoded.len(), 66);
        assert_ne!(encoded, encode(&"X".repeat(101)));
    }
}
