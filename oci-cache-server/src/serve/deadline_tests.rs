//! The deadlines of [`Guarded`] on an in-memory pipe, with short real timeouts. Only
//! lower bounds (a deadline never passes early) and generous upper bounds are asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::{Guarded, Timeouts};
use crate::serve::conn::{Connections, InRequest, Place};

const HEADER: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(600);
const STALL: Duration = Duration::from_millis(300);
/// Timer granularity allowed for in "not before the timeout" checks.
const MARGIN: Duration = Duration::from_millis(20);
/// Far beyond every timeout: an outcome not reached by then never comes.
const BOUND: Duration = Duration::from_secs(10);

async fn guarded(pipe: usize) -> (Guarded<DuplexStream>, DuplexStream, Place) {
    let (ours, theirs) = tokio::io::duplex(pipe);
    let place = Connections::new(4).admit().await;
    let timeouts = Timeouts {
        header: HEADER,
        idle: IDLE,
        stalled_write: STALL,
    };
    let io = Guarded::new(ours, place.state().clone(), timeouts, Instant::now());
    (io, theirs, place)
}

/// Reads until an error (or EOF, an error here); returns it and when it came.
async fn read_until_error(io: &mut Guarded<DuplexStream>) -> (std::io::ErrorKind, Duration) {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let outcome = tokio::time::timeout(BOUND, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) => return std::io::ErrorKind::UnexpectedEof,
                Ok(_) => {}
                Err(e) => return e.kind(),
            }
        }
    })
    .await
    .expect("the read side ends within the bound");
    (outcome, started.elapsed())
}

#[tokio::test]
async fn a_silent_client_times_out_after_the_header_timeout() {
    let (mut io, _client, _place) = guarded(1024).await;
    let (kind, after) = read_until_error(&mut io).await;
    assert_eq!(kind, std::io::ErrorKind::TimedOut);
    assert!(after + MARGIN >= HEADER, "{after:?}");
}

#[tokio::test]
async fn a_trickled_head_is_not_extended_by_its_bytes() {
    let (mut io, mut client, _place) = guarded(1024).await;
    let trickle = tokio::spawn(async move {
        for b in b"GET /v2/ HTTP/1.1\r\n" {
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
    });
    let (kind, _) = read_until_error(&mut io).await;
    assert_eq!(kind, std::io::ErrorKind::TimedOut);
    trickle.abort();
}

#[tokio::test]
async fn no_read_deadline_while_a_request_is_served_then_the_idle_timeout() {
    let (mut io, _client, place) = guarded(1024).await;
    let busy = InRequest::begin(place.state());
    let mut buf = [0u8; 16];
    let waited = tokio::time::timeout(HEADER * 3, io.read(&mut buf)).await;
    assert!(waited.is_err(), "no deadline while busy: {waited:?}");
    let idle_from = Instant::now();
    drop(busy);
    let (kind, _) = read_until_error(&mut io).await;
    assert_eq!(kind, std::io::ErrorKind::TimedOut);
    assert!(idle_from.elapsed() + MARGIN >= IDLE);
}

#[tokio::test]
async fn a_write_nobody_reads_fails_after_the_stall_timeout() {
    let (mut io, _client, _place) = guarded(1024).await;
    let started = Instant::now();
    let chunk = vec![7u8; 4096];
    let outcome = tokio::time::timeout(BOUND, async {
        loop {
            if let Err(e) = io.write_all(&chunk).await {
                return e.kind();
            }
        }
    })
    .await
    .expect("the write fails within the bound");
    assert_eq!(outcome, std::io::ErrorKind::TimedOut);
    assert!(started.elapsed() + MARGIN >= STALL);
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_is_not_cut() {
    let (mut io, mut client, _place) = guarded(1024).await;
    let total = 64 * 1024;
    // Reads 1 KiB every 50 ms (far slower than the pipe, never stalling for STALL):
    // the whole write takes several stall timeouts.
    let reader = tokio::spawn(async move {
        let mut got = 0;
        let mut buf = [0u8; 1024];
        while got < total {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    });
    let started = Instant::now();
    let written = tokio::time::timeout(BOUND, io.write_all(&vec![1u8; total])).await;
    assert!(matches!(written, Ok(Ok(()))), "{written:?}");
    assert!(
        started.elapsed() > STALL,
        "the write did wait for the reader"
    );
    assert_eq!(reader.await.unwrap(), total);
}
