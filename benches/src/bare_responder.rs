//! A reference for a small request under load: a bare responder that answers every request
//! on its connection with the same small body (a cached manifest's bytes), in a plain
//! blocking `read`/`write` loop on a thread of its own (no runtime, no HTTP library, nothing
//! else to do). A light client fetching from it beside the 200-client load sees what this
//! machine's scheduling alone costs a small request there; the light client beside the cache
//! reads against it. Bound to 127.0.0.1, stopped by [`Responder::finish`] or after
//! [`crate::mixed::CAP`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::BoxError;

/// Largest request head the responder reads.
const MAX_HEAD: usize = 64 * 1024;
/// How often the responder looks at its stop flag while it waits for a request.
const POLL: Duration = Duration::from_millis(20);

/// A running responder.
pub struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64, String>>,
}

impl Responder {
    /// Starts answering every request with `body` (of `content_type`).
    ///
    /// # Errors
    ///
    /// Binding the listener.
    pub fn start(body: &[u8], content_type: &str) -> Result<Responder, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            serve(&listener, &response, &stopped).map_err(|e| e.to_string())
        });
        Ok(Responder { addr, stop, thread })
    }

    /// A URL the responder answers.
    pub fn url(&self) -> String {
        format!("http://{}/manifest", self.addr)
    }

    /// Stops the responder; returns how many requests it answered (blocking: call it off
    /// the runtime).
    ///
    /// # Errors
    ///
    /// The responder's I/O failure, or its thread's panic.
    pub fn finish(self) -> Result<u64, BoxError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err("the bare responder panicked".into()),
        }
    }
}

/// Accepts connections one at a time and answers their requests until stopped (or
/// [`crate::mixed::CAP`] passed); returns the number of requests answered.
fn serve(listener: &TcpListener, response: &[u8], stop: &AtomicBool) -> io::Result<u64> {
    let deadline = Instant::now() + crate::mixed::CAP;
    let mut answered = 0;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((tcp, _)) => answered += answer(tcp, response, stop, deadline)?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => return Err(e),
        }
    }
    Ok(answered)
}

/// Answers each request head on `tcp` (requests without a body, as GETs are) until the
/// client closes it, `stop` is set or `deadline` passes; returns how many it answered.
fn answer(
    mut tcp: TcpStream,
    response: &[u8],
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<u64> {
    tcp.set_nonblocking(false)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(POLL))?;
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            tcp.write_all(response)?;
            answered += 1;
        }
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if pending.len() + n <= MAX_HEAD => pending.extend_from_slice(&buf[..n]),
            Ok(_) => return Err(io::Error::other("request head too large")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_each_request_on_a_kept_alive_connection_with_the_body() {
        let responder = Responder::start(b"{\"m\":1}", "application/json").unwrap();
        let client = crate::bench_client().unwrap();
        for _ in 0..3 {
            let resp = client.get(responder.url()).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "application/json");
            assert_eq!(&resp.bytes().await.unwrap()[..], b"{\"m\":1}");
        }
        let answered = tokio::task::spawn_blocking(move || responder.finish())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answered, 3);
    }
}
