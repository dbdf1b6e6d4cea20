//! A reference for a cold GET on this machine: a bare relay that answers one request by
//! GETting the same path from the upstream and copying the upstream's whole response to
//! the client in a plain blocking `read`/`write` loop on one thread (1 MiB buffer): no
//! hash, no storage, no runtime, no HTTP library. Any proxy pays at least this (a third
//! process's two copies and its two TCP connections, on the same cores as the upstream
//! and the client); a cache's cold time over the direct time reads against it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::bare_loop::{accept_within, pump, read_head};
use crate::load::{verified_get, BlobGet};
use crate::BoxError;

/// Read and write buffer of the loop.
const BUF: usize = 1 << 20;
/// A peer that connects, sends or reads nothing for this long ends the relay.
const IDLE: Duration = Duration::from_secs(60);
/// How the upstream's answer starts, the only one the relay passes on.
const OK: &[u8] = b"HTTP/1.1 200 ";

/// One verified GET of `path` (`size` bytes of `digest`) from `upstream` through a fresh
/// bare relay, by the same hashing client as the caches' cold GETs.
///
/// # Errors
///
/// The relay's or the client's failure, or a body of the wrong size or digest.
pub async fn get_once(
    client: &reqwest::Client,
    upstream: SocketAddr,
    path: &str,
    digest: &str,
    size: u64,
) -> Result<BlobGet, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let upstream_path = path.to_owned();
    let relay: JoinHandle<Result<(), BoxError>> =
        std::thread::spawn(move || relay_one(&listener, upstream, &upstream_path));
    let got = verified_get(client, &format!("http://{addr}{path}"), digest, size).await;
    tokio::task::spawn_blocking(move || relay.join())
        .await?
        .map_err(|_| "the bare relay panicked")??;
    got
}

/// Accepts one connection (within [`IDLE`]), reads its request head, GETs `path` from
/// `upstream` and copies the response (a 200, else an error) to the client.
fn relay_one(listener: &TcpListener, upstream: SocketAddr, path: &str) -> Result<(), BoxError> {
    let mut client = accept_within(listener, IDLE)?;
    client.set_read_timeout(Some(IDLE))?;
    client.set_write_timeout(Some(IDLE))?;
    read_head(&mut client)?;
    let mut up = TcpStream::connect_timeout(&upstream, IDLE)?;
    up.set_read_timeout(Some(IDLE))?;
    up.set_write_timeout(Some(IDLE))?;
    write!(
        up,
        "GET {path} HTTP/1.1\r\nhost: {upstream}\r\nconnection: close\r\n\r\n"
    )?;
    // A redirect would send the client to the upstream itself, past the relay.
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    while filled < OK.len() {
        match up.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    if !buf[..filled].starts_with(OK) {
        return Err("the upstream did not answer the bare relay with a 200".into());
    }
    client.write_all(&buf[..filled])?;
    pump(&mut up, &mut client, &mut buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    /// An upstream that answers one request with `response` and then closes.
    fn upstream_once(response: Vec<u8>) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut tcp = accept_within(&listener, IDLE).unwrap();
            read_head(&mut tcp).unwrap();
            tcp.write_all(&response).unwrap();
        });
        (addr, thread)
    }

    #[tokio::test]
    async fn relays_the_upstreams_answer_whole_and_refuses_anything_but_a_200() {
        let client = crate::bench_client().unwrap();
        let body = vec![7u8; 3 * BUF + 5];
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let mut ok = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        ok.extend_from_slice(&body);
        let len = body.len() as u64;
        let relay = |response: Vec<u8>| {
            let (client, digest) = (client.clone(), digest.clone());
            async move {
                let (upstream, thread) = upstream_once(response);
                let got = get_once(&client, upstream, "/v2/r/blobs/x", &digest, len).await;
                thread.join().unwrap();
                got
            }
        };
        relay(ok).await.unwrap();
        let redirect = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:1/\r\n\
                         content-length: 0\r\nconnection: close\r\n\r\n";
        let err = relay(redirect.to_vec()).await.unwrap_err();
        assert!(err.to_string().contains("200"), "{err}");
    }
}
