//! Zero-copy blob responses on plain HTTP/1.1 connections: hyper writes the head, the
//! kernel sends the body from the page cache to the socket with `sendfile(2)`.
//!
//! How: a zero-copy response's body ([`FileBody`]) yields slices of one static buffer
//! ([`PLACEHOLDER`]) instead of the blob's bytes, and registers the file it stands for in
//! the connection's [`Sends`] when hyper first polls it. hyper's vectored write strategy
//! (always on: [`ZeroCopyIo`] is vectored and the connection is built with `writev(true)`)
//! hands those very slices to [`ZeroCopyIo::poll_write_vectored`], which sends the file's
//! bytes in their place. A response is either wholly zero-copy or wholly through hyper.
//!
//! Never wrong bytes: placeholder slices are recognised by address, not content, and
//! only slices inside [`PLACEHOLDER`] are replaced, each by the next bytes of the file
//! registered first. A placeholder with no file registered, or any non-vectored write
//! while a file is registered (hyper copying bodies into its own buffer would do that),
//! fails the write, which closes the connection: the client sees a cut body, never
//! placeholder bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::body::BodyError;

mod warm;

pub(crate) use warm::warm_reads;

/// What a zero-copy body yields in place of its bytes, at most this many at a time.
static PLACEHOLDER: [u8; 1024 * 1024] = [0; 1024 * 1024];

/// A file part waiting to be sent.
struct FilePart {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
}

/// The files a connection's zero-copy responses stand for, in the order hyper writes them.
#[derive(Clone, Default)]
pub(crate) struct Sends {
    queue: Arc<Mutex<VecDeque<FilePart>>>,
}

impl std::fmt::Debug for Sends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sends").finish_non_exhaustive()
    }
}

/// Bytes sent with `sendfile` by every connection since start.
static ZERO_COPY_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes sent with `sendfile` since start (the `oci_cache_zero_copy_bytes_total` metric).
pub(crate) fn zero_copy_bytes() -> u64 {
    ZERO_COPY_BYTES.load(Ordering::Relaxed)
}

impl Sends {
    /// A body of `len` placeholder bytes standing for `file` from `offset`; `keep` lives as
    /// long as the body (a guard that keeps the blob from eviction while it is read).
    pub(crate) fn body(
        &self,
        file: File,
        offset: u64,
        len: u64,
        keep: Box<dyn std::any::Any + Send>,
    ) -> FileBody {
        FileBody {
            _keep: keep,
            sends: self.clone(),
            send: Some(FilePart {
                file: Arc::new(file),
                offset,
                remaining: len,
            }),
            remaining: len,
        }
    }
}

/// A response body whose bytes `sendfile` sends (see the module docs).
pub(crate) struct FileBody {
    _keep: Box<dyn std::any::Any + Send>,
    sends: Sends,
    /// Registered with the connection at the first poll (a response that is never written
    /// registers nothing).
    send: Option<FilePart>,
    remaining: u64,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(send) = self.send.take() {
            self.sends.queue.lock().push_back(send);
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(PLACEHOLDER.len());
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PLACEHOLDER[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.send.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Whether `s` lies inside [`PLACEHOLDER`].
fn is_placeholder(s: &[u8]) -> bool {
    let start = PLACEHOLDER.as_ptr() as usize;
    let p = s.as_ptr() as usize;
    !s.is_empty() && p >= start && p + s.len() <= start + PLACEHOLDER.len()
}

fn broken(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// A plain TCP connection that sends placeholder slices as file bytes.
pub(crate) struct ZeroCopyIo {
    tcp: TcpStream,
    sends: Sends,
    /// Whether the next part to send is in the page cache (see `warm.rs`).
    warm: warm::Warm,
}

impl ZeroCopyIo {
    /// Wraps `tcp`; responses built with the returned [`Sends`] go out zero-copy.
    pub(crate) fn new(tcp: TcpStream) -> (Self, Sends) {
        let sends = Sends::default();
        let io = Self {
            tcp,
            sends: sends.clone(),
            warm: warm::Warm::default(),
        };
        (io, sends)
    }

    /// Sends up to `max` bytes of the first registered file, once they are in the page
    /// cache (`sendfile` on this thread must not wait for the disk).
    fn poll_sendfile(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<usize>> {
        loop {
            // Writable first: a part read into the page cache for a client that then
            // reads nothing for a minute could be evicted again before it goes out.
            std::task::ready!(self.tcp.poll_write_ready(cx))?;
            let Some((file, offset, count)) = self.next_part(max) else {
                return Poll::Ready(Err(broken("placeholder bytes with no file to send")));
            };
            std::task::ready!(self.warm.poll_resident(cx, &file, offset, count))?;
            let mut queue = self.sends.queue.lock();
            let Some(part) = queue.front_mut() else {
                return Poll::Ready(Err(broken("placeholder bytes with no file to send")));
            };
            let mut offset = part.offset;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.tcp, &*file, Some(&mut offset), count)
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => return Poll::Ready(Err(broken("the blob file ended early"))),
                Ok(n) => {
                    part.offset = offset;
                    part.remaining -= n as u64;
                    if part.remaining == 0 {
                        queue.pop_front();
                        self.warm.part_done();
                    }
                    ZERO_COPY_BYTES.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// The first registered file, where its next bytes start and how many of them (at most
    /// `max`) the next `sendfile` sends.
    fn next_part(&self, max: usize) -> Option<(Arc<File>, u64, usize)> {
        let queue = self.sends.queue.lock();
        let part = queue.front()?;
        let count = usize::try_from(part.remaining)
            .unwrap_or(usize::MAX)
            .min(max);
        Some((Arc::clone(&part.file), part.offset, count))
    }
}

impl AsyncRead for ZeroCopyIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // hyper writes vectored here; a plain write while a file waits means it copied a
        // body into its own buffer, placeholders included.
        if is_placeholder(buf) || !self.sends.queue.lock().is_empty() {
            return Poll::Ready(Err(broken("a zero-copy body was not written vectored")));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs: Vec<&io::IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).collect();
        let Some(first) = bufs.first() else {
            return Poll::Ready(Ok(0));
        };
        if is_placeholder(first) {
            let max = first.len();
            return self.poll_sendfile(cx, max);
        }
        // The plain slices before the first placeholder, through the socket as they are.
        let plain: Vec<io::IoSlice<'_>> = bufs
            .iter()
            .take_while(|b| !is_placeholder(b))
            .map(|b| io::IoSlice::new(b))
            .collect();
        Pin::new(&mut self.tcp).poll_write_vectored(cx, &plain)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use http_body::Body as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the cache's side wrapped, and the client's side.
    async fn pair() -> (ZeroCopyIo, Sends, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (io, sends) = ZeroCopyIo::new(accepted.unwrap().0);
        (io, sends, client.unwrap())
    }

    #[tokio::test]
    async fn placeholders_with_no_file_and_plain_writes_while_one_waits_fail() {
        let (mut io, sends, _client) = pair().await;
        let err = io
            .write_vectored(&[io::IoSlice::new(&PLACEHOLDER[..10])])
            .await;
        assert!(err.is_err(), "placeholder bytes went out as they are");
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let mut body = sends.body(file, 0, 10, Box::new(()));
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(frame.is_some());
        // A copy of the placeholder (hyper flattening) must not go out as zeros.
        assert!(io.write(&[0; 10]).await.is_err());
    }

    #[tokio::test]
    async fn a_body_goes_out_as_the_files_bytes_between_plain_ones() {
        let (mut io, sends, mut client) = pair().await;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"xxHELLOxx").unwrap();
        let mut body = sends.body(file, 2, 5, Box::new(()));
        let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        else {
            panic!("no frame");
        };
        let data = frame.into_data().unwrap();
        let mut written = 0;
        while written < 15 {
            // What remains of the three slices, in order.
            let all: Vec<&[u8]> = vec![b"head:", &data, b":tail"];
            let mut skip = written;
            let rest: Vec<io::IoSlice<'_>> = all
                .iter()
                .filter_map(|s| {
                    if skip >= s.len() {
                        skip -= s.len();
                        None
                    } else {
                        let part = &s[skip..];
                        skip = 0;
                        Some(io::IoSlice::new(part))
                    }
                })
                .collect();
            written += io.write_vectored(&rest).await.unwrap();
        }
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"head:HELLO:tail");
        assert!(
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
                .await
                .is_none()
        );
    }
}
