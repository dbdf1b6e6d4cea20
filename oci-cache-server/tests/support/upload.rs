//! Pushing a raw blob with the OCI upload API (POST then monolithic PUT), and
//! fetching a token for it, with reqwest.

use super::registry::Registry;
use super::token_server::{TokenServer, SERVICE};

/// A token for `scope` (e.g. `repository:NAME:pull,push`), Basic-authenticated
/// with `creds` (`user:pass`) when given.
pub async fn fetch_token(
    client: &reqwest::Client,
    token: &TokenServer,
    scope: &str,
    creds: Option<&str>,
) -> String {
    let mut req = client
        .get(token.realm())
        .query(&[("service", SERVICE), ("scope", scope)]);
    if let Some(c) = creds {
        let (user, pass) = c.split_once(':').unwrap_or((c, ""));
        req = req.basic_auth(user, Some(pass));
    }
    let resp = req.send().await.expect("token request");
    assert!(
        resp.status().is_success(),
        "token request failed: {}",
        resp.status()
    );
    let bytes = resp.bytes().await.expect("token body");
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("token JSON");
    body["token"].as_str().expect("token field").to_owned()
}

/// Uploads `data` as a blob of repository `name` and returns its digest
/// (`digest` must be its sha256, e.g. from `sha256_bytes`). With token auth
/// the push token is fetched from `auth` with its credentials.
pub async fn push_blob(
    client: &reqwest::Client,
    registry: &Registry,
    auth: Option<&TokenServer>,
    name: &str,
    data: Vec<u8>,
    digest: &str,
) {
    let len = data.len() as u64;
    push_blob_body(
        client,
        registry,
        auth,
        name,
        digest,
        len,
        reqwest::Body::from(data),
    )
    .await;
}

/// Uploads `len` bytes from `body` (a buffer or a stream) as the blob `digest` of
/// repository `name`: POST, then one PUT with the digest.
pub async fn push_blob_body(
    client: &reqwest::Client,
    registry: &Registry,
    auth: Option<&TokenServer>,
    name: &str,
    digest: &str,
    len: u64,
    body: reqwest::Body,
) {
    let bearer = match auth {
        Some(t) => Some(
            fetch_token(
                client,
                t,
                &format!("repository:{name}:pull,push"),
                t.creds(),
            )
            .await,
        ),
        None => None,
    };
    let with_auth = |req: reqwest::RequestBuilder| match &bearer {
        Some(b) => req.bearer_auth(b),
        None => req,
    };
    let start = with_auth(client.post(format!("{}/v2/{name}/blobs/uploads/", registry.url())))
        .header("Content-Length", "0")
        .send()
        .await
        .expect("start upload");
    assert_eq!(
        start.status().as_u16(),
        202,
        "starting the upload failed: {:?}",
        start.text().await
    );
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload Location")
        .to_owned();
    let mut url = if location.starts_with("http") {
        location
    } else {
        format!("{}{location}", registry.url())
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    url.push_str(digest);
    let put = with_auth(client.put(url))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len.to_string())
        .body(body)
        .send()
        .await
        .expect("finish upload");
    let status = put.status().as_u16();
    assert_eq!(
        status,
        201,
        "finishing the upload failed: {:?}",
        put.text().await
    );
}

/// Pushes `len` pseudo-random bytes (from `seed`) as a blob of `name` to the registry
/// behind `auth`; returns the bytes and their digest.
pub fn push_random_blob(
    rt: &tokio::runtime::Runtime,
    auth: &super::AuthRegistry,
    name: &str,
    seed: u64,
    len: usize,
) -> (Vec<u8>, String) {
    let data = super::pseudo_random_bytes(seed, len);
    let digest = super::sha256_bytes(&data);
    let client = super::rt::http_client(std::time::Duration::from_secs(180));
    rt.block_on(push_blob(
        &client,
        &auth.registry,
        Some(&auth.token),
        name,
        data.clone(),
        &digest,
    ));
    (data, digest)
}
