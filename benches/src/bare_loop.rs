//! A reference for a warm GET on this machine: a bare sender that answers one request with
//! an HTTP/1.1 head and then a file, in a plain blocking `read`/`write` loop on one thread
//! (1 MiB buffer, no runtime, no HTTP library). Its thread pays what every user-space
//! server pays here, the two copies (page cache to user, user to socket) and the TCP stack
//! (over loopback the sender's CPU also carries most of the receiving side's TCP work), and
//! next to nothing else. A cache's warm CPU per GiB and MB/s read against it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

use crate::load::counted_get;
use crate::BoxError;

/// Largest request head the sender reads.
const MAX_HEAD: usize = 64 * 1024;
/// Read and write buffer of the loop.
const BUF: usize = 1 << 20;
/// A client that connects, sends or reads nothing for this long ends the sender.
const IDLE: Duration = Duration::from_secs(60);
/// How often the sender looks for its connection.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// A file of `size` bytes for the bare sender (its content does not matter: the client
/// only counts); removed when dropped.
///
/// # Errors
///
/// Creating or writing the temporary file.
pub fn file(size: u64) -> Result<NamedTempFile, BoxError> {
    let mut file = NamedTempFile::new()?;
    let mut chunks = crate::random_chunks(7, size, BUF);
    chunks.try_for_each(|chunk| file.write_all(&chunk))?;
    file.as_file().sync_all()?;
    Ok(file)
}

/// What one GET of a file cost the bare sender.
#[derive(Debug, Clone, Copy)]
pub struct BareGet {
    /// The sender thread's CPU seconds, from the accept to the last write.
    pub cpu: f64,
    /// The client's time for the whole GET.
    pub wall: Duration,
}

/// One GET of `path` (`size` bytes) from a fresh bare sender, by a client that counts
/// the bytes (`ticks`: `getconf CLK_TCK`). The file is read once first, so it is in the
/// page cache like a cache's stored blob.
///
/// # Errors
///
/// The sender's or the client's failure, or a body of the wrong size.
pub async fn get_once(
    client: &reqwest::Client,
    path: &Path,
    size: u64,
    ticks: f64,
) -> Result<BareGet, BoxError> {
    let warm = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::io::copy(&mut std::fs::File::open(warm)?, &mut io::sink())
    })
    .await??;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    let path = path.to_path_buf();
    let sender: JoinHandle<Result<f64, BoxError>> =
        std::thread::spawn(move || serve_one(&listener, &path, ticks));
    let got = counted_get(client, &format!("http://{addr}/blob"), size).await;
    let cpu = tokio::task::spawn_blocking(move || sender.join())
        .await?
        .map_err(|_| "the bare sender panicked")??;
    Ok(BareGet {
        cpu,
        wall: got?.total,
    })
}

/// Accepts one connection (within [`IDLE`]), reads its request head, sends `path`;
/// returns this thread's CPU seconds from the accept to the last write.
fn serve_one(listener: &TcpListener, path: &Path, ticks: f64) -> Result<f64, BoxError> {
    let mut tcp = accept_within(listener, IDLE)?;
    let start = crate::procfs::thread_cpu_seconds(ticks)?;
    tcp.set_read_timeout(Some(IDLE))?;
    tcp.set_write_timeout(Some(IDLE))?;
    read_head(&mut tcp)?;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    write!(
        tcp,
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
         content-length: {len}\r\nconnection: close\r\n\r\n"
    )?;
    pump(&mut file, &mut tcp, &mut vec![0u8; BUF])?;
    Ok(crate::procfs::thread_cpu_seconds(ticks)? - start)
}

/// Copies everything `from` has to `to` with plain blocking `read` and `write` calls
/// through `buf`, then flushes (not `std::io::copy`, which may use `sendfile` or `splice`).
pub(crate) fn pump(from: &mut impl Read, to: &mut impl Write, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = from.read(buf)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])?;
    }
    to.flush()
}

/// The first connection to `listener` within `wait`, as a blocking stream.
pub(crate) fn accept_within(listener: &TcpListener, wait: Duration) -> Result<TcpStream, BoxError> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((tcp, _)) => {
                tcp.set_nonblocking(false)?;
                return Ok(tcp);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err("no client connected to the bare sender".into());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads up to the end of a request head (`\r\n\r\n`), at most [`MAX_HEAD`] bytes.
pub(crate) fn read_head(tcp: &mut TcpStream) -> Result<(), BoxError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Err("the bare sender's client sent no whole request head".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}
