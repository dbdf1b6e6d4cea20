//! [`Guarded`]: a connection's stream with deadlines, so a client cannot hold a connection
//! open without using it.
//!
//! - A request head must be complete within the header timeout: of the accept for the
//!   first request, of its first byte for each later one on a keep-alive connection. It is
//!   not extended by bytes trickling in.
//! - Between requests, a keep-alive connection may stay silent for the idle timeout.
//! - A write (response bytes) that makes no progress for the stalled-write timeout fails;
//!   any progress starts the wait anew, so a slow reader that keeps reading is never cut.
//!
//! hyper's own `http1::Builder::header_read_timeout` is not used: it starts when hyper
//! begins reading a head, which on a keep-alive connection is the end of the previous
//! response, so it would also bound the idle time by the header timeout.
//!
//! A deadline that passes fails the pending read or write with `TimedOut`; hyper then
//! closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::conn::ConnState;

/// The three timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// For a complete request head.
    pub(super) header: Duration,
    /// For a keep-alive connection between requests.
    pub(super) idle: Duration,
    /// For a write that makes no progress.
    pub(super) stalled_write: Duration,
}

/// What the read side waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head, started (the read timer holds the header deadline).
    Head,
    /// The next request on a keep-alive connection (the read timer holds the idle deadline).
    Idle,
    /// Nothing: a request is being answered (no read deadline).
    Busy,
}

/// A stream with the deadlines of [`Timeouts`].
pub(super) struct Guarded<S> {
    io: S,
    conn: Arc<ConnState>,
    timeouts: Timeouts,
    phase: Phase,
    /// The value of [`ConnState::finished`] last seen.
    seen_finished: u64,
    read_timer: Pin<Box<Sleep>>,
    /// Whether `write_timer` runs (a write is pending with no progress since).
    write_waiting: bool,
    write_timer: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    /// Wraps the stream of a connection accepted at `accepted`: its first request head is
    /// due by `accepted` plus the header timeout.
    pub(super) fn new(io: S, conn: Arc<ConnState>, timeouts: Timeouts, accepted: Instant) -> Self {
        let seen_finished = conn.finished();
        Self {
            io,
            conn,
            timeouts,
            phase: Phase::Head,
            seen_finished,
            read_timer: Box::pin(tokio::time::sleep_until(accepted + timeouts.header)),
            write_waiting: false,
            write_timer: Box::pin(tokio::time::sleep_until(accepted)),
        }
    }

    fn start(&mut self, phase: Phase, timeout: Duration) {
        self.phase = phase;
        self.read_timer.as_mut().reset(Instant::now() + timeout);
    }

    /// Follows the requests the gate has seen begin and end since the last poll.
    fn sync(&mut self) {
        let finished = self.conn.finished();
        if self.conn.in_request() {
            self.phase = Phase::Busy;
            self.seen_finished = finished;
        } else if self.phase == Phase::Busy || finished != self.seen_finished {
            self.seen_finished = finished;
            self.start(Phase::Idle, self.timeouts.idle);
        }
    }

    fn timed_out(&self) -> io::Error {
        let what = match self.phase {
            Phase::Head => format!("no complete request head within {:?}", self.timeouts.header),
            Phase::Idle | Phase::Busy => {
                format!("keep-alive connection idle for {:?}", self.timeouts.idle)
            }
        };
        tracing::debug!(reason = %what, "closing a client connection");
        io::Error::new(io::ErrorKind::TimedOut, what)
    }

    /// Called when a write is pending: fails it once no write progressed for the
    /// stalled-write timeout.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.write_waiting {
            self.write_waiting = true;
            let deadline = Instant::now() + self.timeouts.stalled_write;
            self.write_timer.as_mut().reset(deadline);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let what = format!(
                    "the client read nothing of the response for {:?}",
                    self.timeouts.stalled_write
                );
                tracing::debug!(reason = %what, "closing a client connection");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write progressed: the stall wait ends, and an idle connection's idle time starts
    /// again (the rest of a response is still going out).
    fn wrote(&mut self) {
        self.write_waiting = false;
        if self.phase == Phase::Idle {
            self.start(Phase::Idle, self.timeouts.idle);
        }
    }

    /// Maps a write's outcome: progress noted, `Pending` subject to the stall deadline.
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        progressed: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Ok(v)) => {
                if progressed(&v) {
                    self.wrote();
                }
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_stall(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.sync();
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.start(Phase::Head, this.timeouts.header);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.sync();
                if this.phase == Phase::Busy {
                    // Woken when the request ends, to start the idle deadline.
                    this.conn.wake_on_idle(cx.waker());
                    this.sync();
                    if this.phase == Phase::Busy {
                        return Poll::Pending;
                    }
                }
                match this.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(this.timed_out())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, polled, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A flush progresses only when a write was waiting (hyper flushes at every turn).
        let waiting = this.write_waiting;
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.after_write(cx, polled, move |()| waiting)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.after_write(cx, polled, |()| false)
    }
}

#[cfg(test)]
#[path = "deadline_tests.rs"]
mod tests;
