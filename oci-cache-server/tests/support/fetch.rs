//! One-shot HTTP requests from synchronous test code (reqwest on a private
//! current-thread runtime), with the answer's status, headers and whole body.

use std::time::Duration;

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// No `Authorization` header.
    None,
    /// `Authorization: Basic` of user and password.
    Basic(&'a str, &'a str),
    /// `Authorization: Bearer TOKEN`.
    Bearer(&'a str),
}

/// A finished response.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Every header.
    pub headers: reqwest::header::HeaderMap,
    /// The whole body (empty for HEAD).
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(512)])
            )
        })
    }

    /// The `code` of the first OCI error of the body
    /// (`{"errors":[{"code":...}]}`), if the body is such an error.
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_owned)
    }

    /// A short description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status {} headers {:?} body {:?}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body[..self.body.len().min(512)])
        )
    }
}

/// Sends `method` (GET or HEAD) to `url` with `auth`; bounded at 60 s.
/// Panics when no answer comes (connection refused, timeout).
pub fn fetch(method: &str, url: &str, auth: Auth<'_>) -> Answer {
    fetch_with(method, url, auth, &[])
}

/// [`fetch`] with extra request headers (e.g. another `Host`).
pub fn fetch_with(method: &str, url: &str, auth: Auth<'_>, headers: &[(&str, &str)]) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        oci_cache_core::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = client.request(method, url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        match auth {
            Auth::None => {}
            Auth::Basic(user, pass) => req = req.basic_auth(user, Some(pass)),
            Auth::Bearer(token) => req = req.bearer_auth(token),
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: no answer: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{url}: body: {e}"))
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    })
}
