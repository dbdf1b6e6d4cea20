//! A fake upstream registry that misbehaves on purpose, for the faults a real
//! registry cannot be made to produce on demand: wrong bytes, short bodies,
//! resets, stalls, slow bodies, hung connections, 503s.
//!
//! It answers the pull API honestly from a fixed [`FakeContent`], per
//! repository (a manifest or blob exists in a repository only when the content
//! says so; anything else is a 404 with an OCI error body), except where a
//! [`FaultMode`] says otherwise. It runs on a thread of its own (a
//! current-thread tokio runtime), so synchronous tests and async tests use it
//! alike, and stops when dropped. Every response closes its connection
//! (`Connection: close`), so the connection count says how many times a
//! client dialled.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::digest::sha256_bytes;
use crate::net::wait_until;

/// How long a hung or stalled connection is held at most (unless the peer goes).
pub const HOLD: Duration = Duration::from_secs(30);
/// How long a [`FaultMode::Slow`] body takes.
pub const SLOW: Duration = Duration::from_secs(3);
/// Events kept for [`FakeUpstream::log_tail`].
const EVENTS: usize = 500;

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Honestly.
    Ok,
    /// A blob GET: the announced length, one byte flipped.
    WrongDigest,
    /// A blob GET: half the announced length, then a clean close (FIN).
    Short,
    /// A blob GET: half the announced length, then a TCP reset (RST).
    Reset,
    /// A blob GET: half the announced length, then silence (at most [`HOLD`]).
    Stall,
    /// A blob GET: the right bytes, in 16 pieces over [`SLOW`].
    Slow,
    /// Any connection: accepted, never answered (at most [`HOLD`]).
    Hang,
    /// Any request: 503 Service Unavailable (the upstream is down).
    Unavailable,
}

impl FaultMode {
    /// The mode's name, as the request records show it.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultMode::Ok => "ok",
            FaultMode::WrongDigest => "wrong-digest",
            FaultMode::Short => "short",
            FaultMode::Reset => "reset",
            FaultMode::Stall => "stall",
            FaultMode::Slow => "slow",
            FaultMode::Hang => "hang",
            FaultMode::Unavailable => "unavailable",
        }
    }
}

/// The content of one repository: manifests by tag and the digests it holds.
#[derive(Clone, Debug, Default)]
pub struct FakeRepo {
    /// Tag → manifest digest.
    pub tags: BTreeMap<String, String>,
    /// Every digest (manifests, configs, layers) the repository holds.
    pub digests: BTreeSet<String>,
}

/// What a fake upstream holds: objects by digest, and which repository holds which.
#[derive(Clone, Debug, Default)]
pub struct FakeContent {
    /// Bytes by digest.
    pub objects: BTreeMap<String, Bytes>,
    /// Media types of the manifests, by digest.
    pub manifests: BTreeMap<String, String>,
    /// Repositories by name.
    pub repos: BTreeMap<String, FakeRepo>,
}

impl FakeContent {
    /// Adds a blob to `repo`; returns its digest.
    pub fn blob(&mut self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_bytes(bytes);
        self.objects
            .insert(digest.clone(), Bytes::copy_from_slice(bytes));
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .digests
            .insert(digest.clone());
        digest
    }

    /// Adds an OCI image manifest naming `config` and `layers` (already added with
    /// [`blob`](Self::blob)) to `repo` under `tag`; returns its digest.
    pub fn image(&mut self, repo: &str, tag: &str, config: &str, layers: &[&str]) -> String {
        let desc = |media: &str, d: &str| serde_json::json!({"mediaType": media, "digest": d, "size": self.objects[d].len()});
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
        });
        self.raw_manifest(repo, tag, &manifest)
    }

    /// Adds `manifest` (any JSON) to `repo` under `tag` as an OCI image manifest, without
    /// the blobs it names (as registries accept for foreign layers); returns its digest.
    pub fn raw_manifest(&mut self, repo: &str, tag: &str, manifest: &serde_json::Value) -> String {
        let bytes = serde_json::to_vec(manifest).expect("manifest JSON");
        let digest = self.blob(repo, &bytes);
        self.manifests.insert(
            digest.clone(),
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
        );
        self.repos
            .entry(repo.to_owned())
            .or_default()
            .tags
            .insert(tag.to_owned(), digest.clone());
        digest
    }

    /// Whether `repo` holds `digest`.
    pub fn holds(&self, repo: &str, digest: &str) -> bool {
        self.repos
            .get(repo)
            .is_some_and(|r| r.digests.contains(digest))
    }
}

/// What the fake has seen.
#[derive(Clone, Debug)]
pub struct FakeStats {
    /// The current mode.
    pub mode: FaultMode,
    /// Connections accepted.
    pub connections: u64,
    /// Each request as `MODE METHOD PATH` (`hang ? ?` for a hung connection).
    pub requests: Vec<String>,
}

/// A running fake upstream on 127.0.0.1; stopped (every connection closed) on drop.
#[derive(Debug)]
pub struct FakeUpstream {
    /// Its address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts serving `content` honestly on an ephemeral port of 127.0.0.1.
    pub fn start(content: FakeContent) -> FakeUpstream {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            content,
            mode: Mutex::new(FaultMode::Ok),
            blob_modes: Mutex::new(HashMap::new()),
            peers: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            events: Mutex::new(VecDeque::new()),
            started: Instant::now(),
            connections: AtomicU64::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the fake upstream's runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    tokio::select! {
                        () = accept_loop(listener, s) => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the fake upstream's thread");
        FakeUpstream {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Starts a fake holding one blob in `repo`, answering in `mode`.
    pub fn serving_blob(repo: &str, blob: &[u8], mode: FaultMode) -> FakeUpstream {
        let mut content = FakeContent::default();
        content.blob(repo, blob);
        let fake = FakeUpstream::start(content);
        fake.set_mode(mode);
        fake
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches the mode, for connections accepted from now on.
    pub fn set_mode(&self, mode: FaultMode) {
        *lock(&self.shared.mode) = mode;
        self.shared.event(&format!("mode set to {}", mode.as_str()));
    }

    /// Answers GETs of blob `digest` in `mode` from now on, whatever the mode of
    /// everything else.
    pub fn set_blob_mode(&self, digest: &str, mode: FaultMode) {
        lock(&self.shared.blob_modes).insert(digest.to_owned(), mode);
        self.shared
            .event(&format!("mode of {digest} set to {}", mode.as_str()));
    }

    /// What the fake has seen so far.
    pub fn stats(&self) -> FakeStats {
        FakeStats {
            mode: *lock(&self.shared.mode),
            connections: self.shared.connections.load(Ordering::SeqCst),
            requests: lock(&self.shared.requests).clone(),
        }
    }

    /// Requests seen so far (hung connections included).
    pub fn requests(&self) -> u64 {
        lock(&self.shared.requests).len() as u64
    }

    /// How many connections the fake had accepted before one the test opens
    /// now: opens it, waits (at most 5 s) until the fake has accepted it, and
    /// closes it. Connections are accepted in the order they were made, so
    /// every dial made before this call is counted in the answer: a positive
    /// event that proves "no client dialled meanwhile" without sleeping.
    pub fn connections_before_probe(&self) -> u64 {
        let probe = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("probe connection to the fake upstream: {e}"));
        let port = probe.local_addr().expect("the probe's address").port();
        let before = wait_until(
            "the fake upstream to accept the probe connection",
            Duration::from_secs(5),
            || {
                lock(&self.shared.peers)
                    .iter()
                    .rposition(|p| *p == port)
                    .map(|i| i as u64)
            },
            || self.log_tail(),
        );
        self.shared.event(&format!(
            "probe from port {port}: {before} connections before it"
        ));
        before
    }

    /// What the fake did, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::from("----- fake upstream -----\n");
        for line in lock(&self.shared.events).iter() {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("----- end of fake upstream -----");
        s
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The state the serving thread and the test share.
#[derive(Debug)]
struct Shared {
    content: FakeContent,
    mode: Mutex<FaultMode>,
    blob_modes: Mutex<HashMap<String, FaultMode>>,
    /// Peer ports of the accepted connections, in accept order.
    peers: Mutex<Vec<u16>>,
    requests: Mutex<Vec<String>>,
    events: Mutex<VecDeque<String>>,
    started: Instant,
    connections: AtomicU64,
}

impl Shared {
    fn event(&self, what: &str) {
        let mut events = lock(&self.events);
        if events.len() >= EVENTS {
            events.pop_front();
        }
        events.push_back(format!(
            "fake-upstream {:.3} {what}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    fn record(&self, mode: FaultMode, method: &str, path: &str) {
        lock(&self.requests).push(format!("{} {method} {path}", mode.as_str()));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until the fake is dropped.
async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let n = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                lock(&shared.peers).push(peer.port());
                let mode = *lock(&shared.mode);
                shared.event(&format!(
                    "connection {n} from {peer} in mode {}",
                    mode.as_str()
                ));
                tokio::spawn(handle(Arc::clone(&shared), stream, n, mode));
            }
            Err(e) => {
                shared.event(&format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: one request, answered per `mode` (read when it was accepted).
async fn handle(shared: Arc<Shared>, mut stream: TcpStream, n: u64, mode: FaultMode) {
    if mode == FaultMode::Hang {
        shared.record(mode, "?", "?");
        hold(&shared, &mut stream, &format!("connection {n} (hang)")).await;
        return;
    }
    let Some((method, target)) = read_head(&mut stream).await else {
        shared.event(&format!("connection {n}: no request"));
        return;
    };
    let path = target.split('?').next().unwrap_or_default().to_owned();
    if mode == FaultMode::Unavailable {
        shared.record(mode, &method, &path);
        shared.event(&format!("{} {method} {target}: 503", mode.as_str()));
        let body = error_body("UNAVAILABLE");
        let sent = respond(
            &mut stream,
            "503 Service Unavailable",
            &json_headers(&body),
            &body,
            &method,
        )
        .await;
        if let Err(e) = sent {
            shared.event(&format!("connection {n}: send failed: {e}"));
        }
        return;
    }
    let answer = answer(&shared.content, &method, &path);
    let mode = match &answer {
        Answer::Blob { digest, .. } if method == "GET" => lock(&shared.blob_modes)
            .get(digest)
            .copied()
            .unwrap_or(mode),
        _ => FaultMode::Ok,
    };
    shared.record(mode, &method, &path);
    shared.event(&format!("{} {method} {target}", mode.as_str()));
    let result = match answer {
        Answer::Status(status, body, headers) => {
            respond(&mut stream, status, &headers, &body, &method).await
        }
        Answer::Blob {
            bytes,
            headers,
            digest: _,
        } => send_blob(&shared, &mut stream, n, mode, &headers, &bytes, &method).await,
    };
    if let Err(e) = result {
        shared.event(&format!("connection {n}: send failed: {e}"));
    }
}

/// What an honest registry answers.
enum Answer {
    /// A status with a (small) body.
    Status(&'static str, Vec<u8>, Vec<(&'static str, String)>),
    /// A manifest or blob the repository holds.
    Blob {
        digest: String,
        bytes: Bytes,
        headers: Vec<(&'static str, String)>,
    },
}

fn error_body(code: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": "not here"}]})
        .to_string()
        .into_bytes()
}

fn json_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_owned()),
        ("Content-Length", body.len().to_string()),
    ]
}

fn not_found(code: &str) -> Answer {
    let body = error_body(code);
    Answer::Status("404 Not Found", body.clone(), json_headers(&body))
}

fn answer(content: &FakeContent, method: &str, path: &str) -> Answer {
    if method != "GET" && method != "HEAD" {
        let body = error_body("UNSUPPORTED");
        return Answer::Status("405 Method Not Allowed", body.clone(), json_headers(&body));
    }
    if path == "/v2/" || path == "/v2" {
        let body = b"{}".to_vec();
        return Answer::Status("200 OK", body.clone(), json_headers(&body));
    }
    let Some(tail) = path.strip_prefix("/v2/") else {
        return not_found("NOT_FOUND");
    };
    let (repo, kind, reference) = match (tail.rfind("/manifests/"), tail.rfind("/blobs/")) {
        (Some(i), _) => (&tail[..i], "manifests", &tail[i + 11..]),
        (None, Some(i)) => (&tail[..i], "blobs", &tail[i + 7..]),
        _ => return not_found("NOT_FOUND"),
    };
    let unknown = if kind == "manifests" {
        "MANIFEST_UNKNOWN"
    } else {
        "BLOB_UNKNOWN"
    };
    let Some(r) = content.repos.get(repo) else {
        return not_found("NAME_UNKNOWN");
    };
    let digest = if kind == "manifests" && !reference.contains(':') {
        match r.tags.get(reference) {
            Some(d) => d.clone(),
            None => return not_found(unknown),
        }
    } else {
        reference.to_owned()
    };
    let is_manifest = content.manifests.contains_key(&digest);
    if !r.digests.contains(&digest) || (kind == "manifests" && !is_manifest) {
        return not_found(unknown);
    }
    let bytes = content.objects[&digest].clone();
    let media = content
        .manifests
        .get(&digest)
        .map_or("application/octet-stream", String::as_str);
    let headers = vec![
        ("Content-Type", media.to_owned()),
        ("Content-Length", bytes.len().to_string()),
        ("Docker-Content-Digest", digest.clone()),
    ];
    Answer::Blob {
        digest,
        bytes,
        headers,
    }
}

/// Sends a blob the repository holds, per `mode`.
async fn send_blob(
    shared: &Shared,
    stream: &mut TcpStream,
    n: u64,
    mode: FaultMode,
    headers: &[(&'static str, String)],
    bytes: &Bytes,
    method: &str,
) -> std::io::Result<()> {
    if method == "HEAD" {
        return respond(stream, "200 OK", headers, &[], method).await;
    }
    let half = &bytes[..bytes.len() / 2];
    match mode {
        FaultMode::Ok => respond(stream, "200 OK", headers, bytes, method).await?,
        FaultMode::Unavailable => {
            let body = error_body("UNAVAILABLE");
            respond(
                stream,
                "503 Service Unavailable",
                &json_headers(&body),
                &body,
                method,
            )
            .await?;
        }
        FaultMode::WrongDigest => {
            let mut bad = bytes.to_vec();
            if let Some(b) = bad.get_mut(bytes.len() / 2) {
                *b ^= 0x01;
            }
            respond(stream, "200 OK", headers, &bad, method).await?;
        }
        FaultMode::Short => {
            write_head(stream, "200 OK", headers).await?;
            stream.write_all(half).await?;
            stream.shutdown().await?;
            // Let the peer read what was sent before the socket goes away.
            peer_gone(stream, Duration::from_secs(2)).await;
        }
        FaultMode::Reset => {
            write_head(stream, "200 OK", headers).await?;
            stream.write_all(half).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            stream.set_zero_linger()?;
            shared.event(&format!("connection {n}: reset sent"));
        }
        FaultMode::Stall => {
            write_head(stream, "200 OK", headers).await?;
            stream.write_all(half).await?;
            stream.flush().await?;
            hold(shared, stream, &format!("connection {n} (stall)")).await;
        }
        FaultMode::Slow => {
            write_head(stream, "200 OK", headers).await?;
            let step = bytes.len().div_ceil(16).max(1);
            for piece in bytes.chunks(step) {
                tokio::time::sleep(SLOW / 16).await;
                stream.write_all(piece).await?;
            }
            stream.flush().await?;
            shared.event(&format!("connection {n} (slow) sent everything"));
            stream.shutdown().await?;
        }
        FaultMode::Hang => {
            hold(shared, stream, &format!("connection {n} (hang)")).await;
        }
    }
    Ok(())
}

/// The request line's method and target, once the whole head has arrived (at
/// most 64 KiB, within 10 s); None otherwise.
async fn read_head(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut first = head.lines().next()?.split(' ');
    Some((first.next()?.to_owned(), first.next()?.to_owned()))
}

async fn write_head(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&'static str, String)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await
}

/// A whole response (no body for HEAD), then a clean close.
async fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
    method: &str,
) -> std::io::Result<()> {
    write_head(stream, status, headers).await?;
    if method != "HEAD" {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}

/// Waits up to `timeout`; true when the peer closed (or reset) the connection.
/// Anything it sends meanwhile is read and dropped.
async fn peer_gone(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Keeps the connection open without answering, until the peer goes (at most [`HOLD`]).
async fn hold(shared: &Shared, stream: &mut TcpStream, what: &str) {
    if peer_gone(stream, HOLD).await {
        shared.event(&format!("{what}: peer went away"));
    } else {
        shared.event(&format!("{what}: held for {HOLD:?}; closing"));
    }
}
