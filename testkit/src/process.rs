//! Child processes: a kill-on-drop guard that keeps its output in log files and
//! prints their tails when a test panics, starting a server on a fresh port
//! and waiting until it is ready, and running a command with a time limit.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;

/// How much of each log file a failure report shows.
const TAIL_BYTES: u64 = 24 * 1024;

/// A spawned long-running process (a server). Its stdout and stderr go to
/// `DIR/NAME.stdout.log` and `DIR/NAME.log`. Dropping it stops it (SIGTERM first
/// when `graceful`, SIGKILL after a bounded wait); if the thread is panicking the
/// log tails are printed first, so a failing test shows what the servers said.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    graceful: bool,
}

impl Proc {
    /// Spawns `cmd` with its output in log files under `log_dir`.
    pub fn spawn(name: &str, cmd: Command, log_dir: &Path, graceful: bool) -> Proc {
        Self::try_spawn(name, cmd, log_dir, graceful).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Proc::spawn`], but Err when the process cannot start.
    pub fn try_spawn(
        name: &str,
        mut cmd: Command,
        log_dir: &Path,
        graceful: bool,
    ) -> Result<Proc, String> {
        let stdout_log = log_dir.join(format!("{name}.stdout.log"));
        let stderr_log = log_dir.join(format!("{name}.log"));
        let create = |p: &Path| File::create(p).map_err(|e| format!("create {}: {e}", p.display()));
        cmd.stdin(Stdio::null())
            .stdout(create(&stdout_log)?)
            .stderr(create(&stderr_log)?);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {name} ({cmd:?}): {e}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            stdout_log,
            stderr_log,
            graceful,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Err (naming the process, with its log tail) unless it is still running.
    pub fn check_running(&mut self) -> Result<(), String> {
        if self.child.is_none() {
            return Err(format!("{} was stopped", self.name));
        }
        match self.exited() {
            Some(status) => Err(format!(
                "{} exited early: {status}\n{}",
                self.name,
                self.log_tail()
            )),
            None => Ok(()),
        }
    }

    /// The stderr log file (the main log of every server here).
    pub fn log_path(&self) -> &Path {
        &self.stderr_log
    }

    /// The whole stderr log (bytes that are not UTF-8 replaced, not the whole log lost).
    pub fn log(&self) -> String {
        std::fs::read(&self.stderr_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The whole stdout log (where some servers, such as s3s-fs, log).
    pub fn stdout(&self) -> String {
        std::fs::read(&self.stdout_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The tails of both logs, for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "----- {name} stderr ({p}) -----\n{e}\n----- {name} stdout -----\n{o}\n----- end of {name} -----",
            name = self.name,
            p = self.stderr_log.display(),
            e = tail(&self.stderr_log, TAIL_BYTES),
            o = tail(&self.stdout_log, TAIL_BYTES / 4),
        )
    }

    /// Sends SIGKILL (no chance to clean up) and reaps the process.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process: SIGTERM and up to 10 s to exit when graceful, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if self.graceful {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "{} did not exit within 10 s of SIGTERM; killing it",
                self.name
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        self.stop();
    }
}

/// A server to start on a fresh port with [`start_server`].
pub struct ServerSpec<'a> {
    /// Its name in log file names and messages (`NAME-ATTEMPT`).
    pub name: &'a str,
    /// Where its log files go.
    pub log_dir: &'a Path,
    /// Whether dropping it sends SIGTERM first (else SIGKILL at once).
    pub graceful: bool,
    /// How long it may take to become ready.
    pub timeout: Duration,
}

/// Starts `command(port)` on a port from [`free_port`] and polls `ready(port)`
/// every 50 ms until it says yes (at most `spec.timeout`). A server that
/// exits because its port was taken meanwhile (its log says "in use") is
/// started again on another port, at most 3 times; any other failure is an
/// Err with its log.
pub fn start_server(
    spec: &ServerSpec<'_>,
    command: impl FnMut(u16) -> Command,
    ready: impl FnMut(u16) -> bool,
) -> Result<(Proc, u16), String> {
    start_server_on(spec, None, command, ready)
}

/// [`start_server`] on `port` when given (one attempt: a server whose address others were
/// told in advance cannot move), else on free ports.
pub fn start_server_on(
    spec: &ServerSpec<'_>,
    port: Option<u16>,
    mut command: impl FnMut(u16) -> Command,
    mut ready: impl FnMut(u16) -> bool,
) -> Result<(Proc, u16), String> {
    let mut last_log = String::new();
    let attempts = if port.is_some() { 1 } else { 3 };
    for attempt in 0..attempts {
        let port = port.unwrap_or_else(free_port);
        let name = format!("{}-{attempt}", spec.name);
        let mut proc = Proc::try_spawn(&name, command(port), spec.log_dir, spec.graceful)?;
        let deadline = Instant::now() + spec.timeout;
        let outcome = loop {
            if ready(port) {
                return Ok((proc, port));
            }
            if let Some(status) = proc.exited() {
                break format!("exited with {status}");
            }
            if Instant::now() >= deadline {
                break format!("not ready within {:?}", spec.timeout);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        last_log = proc.log_tail();
        let lost_port_race = proc.exited().is_some() && proc.log().contains("in use");
        let whole = proc.log();
        proc.stop();
        if !lost_port_race {
            return Err(format!(
                "{} did not become ready ({outcome})\n{last_log}\n----- whole log -----\n{whole}",
                spec.name
            ));
        }
    }
    Err(format!("{} could not bind a port\n{last_log}", spec.name))
}

/// The last `max` bytes of a file, starting at a line boundary.
pub fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(max);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        match text.find('\n') {
            Some(i) => format!("[... {start} bytes before ...]\n{}", &text[i + 1..]),
            None => text,
        }
    } else {
        text
    }
}

/// Runs a command to completion within `timeout`, capturing its output. Err
/// when it cannot start or runs too long (it is killed then); a non-zero exit
/// is an Ok(output) for the caller to judge.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{cmd:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// Like [`run_with_timeout`], but a non-zero exit is an Err too; Ok is stdout.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Vec<u8>, String> {
    let out = run_with_timeout(cmd, timeout)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(describe_failure(cmd, &out))
    }
}

/// A readable account of a failed command.
pub fn describe_failure(cmd: &Command, out: &Output) -> String {
    format!(
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
