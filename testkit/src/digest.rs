//! SHA-256 digests (`sha256:HEX`) computed by coreutils' `sha256sum`, so the
//! tests need no hashing crate and hash fast even in debug builds.
//! (With `sha2` + `hex` as dev-dependencies, [`Sha256Pipe`] could become a
//! thin wrapper over `sha2::Sha256`.)

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::process::run_ok;
use crate::tools::require_tool;

/// The digest of a file.
pub fn sha256_file(path: &Path) -> String {
    require_tool("sha256sum");
    let out = run_ok(
        Command::new("sha256sum").arg("-b").arg(path),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("sha256sum failed: {e}"));
    parse_sum(&out)
}

/// The digest of some bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    let mut pipe = Sha256Pipe::new();
    pipe.update(data);
    pipe.finish()
}

/// A streaming hasher: feed it chunks, then `finish` for `sha256:HEX`.
/// `update` blocks (on a pipe), so call it from blocking code, e.g. inside
/// `tokio::task::block_in_place` on a multi-threaded runtime.
pub struct Sha256Pipe {
    child: Child,
    stdin: Option<ChildStdin>,
    bytes: u64,
}

impl Sha256Pipe {
    /// Starts a `sha256sum` reading standard input.
    pub fn new() -> Sha256Pipe {
        require_tool("sha256sum");
        let mut child = Command::new("sha256sum")
            .arg("-b")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sha256sum");
        let stdin = child.stdin.take();
        Sha256Pipe {
            child,
            stdin,
            bytes: 0,
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.stdin
            .as_mut()
            .expect("hasher already finished")
            .write_all(data)
            .expect("write to sha256sum");
    }

    /// How many bytes were hashed.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether no byte was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Closes the input and returns `sha256:HEX`.
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut out = Vec::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            use std::io::Read;
            stdout.read_to_end(&mut out).expect("read sha256sum output");
        }
        let status = self.child.wait().expect("wait for sha256sum");
        assert!(status.success(), "sha256sum failed: {status}");
        parse_sum(&out)
    }
}

impl Default for Sha256Pipe {
    fn default() -> Self {
        Sha256Pipe::new()
    }
}

impl Drop for Sha256Pipe {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_sum(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let hex = text.split_whitespace().next().unwrap_or("");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "unexpected sha256sum output: {text:?}"
    );
    format!("sha256:{hex}")
}

/// Deterministic incompressible bytes (xorshift64*), for blobs of any size.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
