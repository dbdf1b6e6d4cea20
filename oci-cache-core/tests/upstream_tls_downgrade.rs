//! An https upstream that redirects to plain http: the redirect is refused, and the http
//! target never sees a request. The https side is a real rustls server with a certificate
//! for 127.0.0.1 signed by a CA made with `openssl`, trusted through `SSL_CERT_FILE` (read
//! by the platform verifier when the client is built; nextest runs each test in its own
//! process, so setting it here touches no other test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use oci_cache_core::{Digest, TargetRefusal, UpstreamClient, UpstreamConfig, UpstreamError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{respond, Fake};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for this test: {e}"));
    assert!(status.status.success(), "openssl {args:?}: {status:?}");
}

/// `ca.crt`, `server.crt` and `server.key` (for IP 127.0.0.1) in `dir`.
fn make_pki(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-nodes", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
}

/// An https server on 127.0.0.1 that answers every request with a 307 to `location`;
/// returns its port.
async fn https_redirector(dir: &Path, location: String) -> u16 {
    let certs = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, location) = (acceptor.clone(), location.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let resp = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_https_upstream_cannot_redirect_down_to_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.crt"));
    let plain = Fake::start(|_req, s| async move { respond(s, "200 OK", &[], b"x").await }).await;
    let port = https_redirector(dir.path(), format!("{}/cdn/blob", plain.url())).await;
    let client = UpstreamClient::new(UpstreamConfig::new(
        "tls",
        format!("https://127.0.0.1:{port}"),
    ))
    .unwrap();
    let err = client
        .blob("test/app", &Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::RedirectRefused {
                reason: TargetRefusal::Downgrade,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(plain.count.load(std::sync::atomic::Ordering::SeqCst), 0);
}
