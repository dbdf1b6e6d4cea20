//! Per-process CPU time and peak memory from `/proc` (Linux), for comparing servers.

use std::process::Command;

use crate::BoxError;

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`).
pub fn clock_ticks() -> Result<f64, BoxError> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    if !out.status.success() {
        return Err(format!("getconf CLK_TCK: {}", out.status).into());
    }
    let ticks: u32 = String::from_utf8(out.stdout)?.trim().parse()?;
    if ticks == 0 {
        return Err("getconf CLK_TCK: 0".into());
    }
    Ok(f64::from(ticks))
}

/// User + system CPU seconds used so far by process `pid` (all its threads):
/// `utime` + `stime` of `/proc/PID/stat` divided by `ticks`.
pub fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64, BoxError> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"), ticks)
}

/// User + system CPU seconds used so far by the calling thread (`/proc/thread-self/stat`).
pub fn thread_cpu_seconds(ticks: f64) -> Result<f64, BoxError> {
    stat_cpu_seconds("/proc/thread-self/stat", ticks)
}

/// `utime` + `stime` of a `stat` file of `/proc` divided by `ticks`.
fn stat_cpu_seconds(path: &str, ticks: f64) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(path)?;
    // The command name (field 2) may hold spaces; the fields after its ')' start at
    // field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("malformed /proc stat file")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64, BoxError> {
        Ok(fields
            .get(i)
            .ok_or("short /proc stat file")?
            .parse::<u64>()?)
    };
    let total = field(11)? + field(12)?;
    #[allow(clippy::cast_precision_loss, reason = "tick counts are far below 2^52")]
    Ok(total as f64 / ticks)
}

/// Peak resident set size of process `pid` so far, in KiB (`VmHWM` of
/// `/proc/PID/status`).
pub fn peak_rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/PID/status".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let ticks = clock_ticks().unwrap();
        let pid = std::process::id();
        assert!(cpu_seconds(pid, ticks).unwrap() >= 0.0);
        assert!(peak_rss_kib(pid).unwrap() > 0);
    }
}
