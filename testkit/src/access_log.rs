//! Parsing distribution's request log. Every finished request is one logrus
//! text line on stderr, e.g.
//!
//! ```text
//! time="..." level=info msg="response completed" go.version=go1.19.8 http.request.host="127.0.0.1:40000"
//!   http.request.id=... http.request.method=GET http.request.remoteaddr="127.0.0.1:44040"
//!   http.request.uri="/v2/test/multilayer/blobs/sha256:89c3..." http.request.useragent=skopeo/1.9.3
//!   http.response.contenttype=application/octet-stream http.response.duration=79.8ms
//!   http.response.status=200 http.response.written=10489279
//! ```
//!
//! (one line; values are quoted only when they hold characters such as `:`).
//! Requests refused for want of a token log `msg="error authorizing context..."`
//! instead, so counting `response completed` lines counts served requests.

/// One finished request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    /// GET, HEAD, PUT...
    pub method: String,
    /// Path and query, e.g. `/v2/NAME/blobs/sha256:...`.
    pub uri: String,
    /// HTTP status (0 if not logged).
    pub status: u16,
    /// Body bytes written (0 if not logged).
    pub written: u64,
    /// The client's User-Agent.
    pub user_agent: String,
}

impl AccessRecord {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// A blob download (`GET /v2/NAME/blobs/DIGEST`, not an upload).
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET"
            && self.path().contains("/blobs/")
            && !self.path().contains("/blobs/uploads")
    }

    /// A manifest request (GET or HEAD).
    pub fn is_manifest(&self) -> bool {
        self.path().contains("/manifests/")
    }
}

/// The finished requests in a registry log.
pub fn parse_log(text: &str) -> Vec<AccessRecord> {
    text.lines().filter_map(parse_line).collect()
}

/// One `response completed` line, or None for any other line.
pub fn parse_line(line: &str) -> Option<AccessRecord> {
    if !line.contains("msg=\"response completed") {
        return None;
    }
    Some(AccessRecord {
        method: field(line, "http.request.method")?,
        uri: field(line, "http.request.uri")?,
        status: field(line, "http.response.status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        written: field(line, "http.response.written")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        user_agent: field(line, "http.request.useragent").unwrap_or_default(),
    })
}

/// The value of ` key=value` or ` key="quoted value"` in a logrus text line.
fn field(line: &str, key: &str) -> Option<String> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        Some(rest.split(' ').next().unwrap_or("").to_owned())
    }
}
