//! The S3 side of the tests: the real S3 server ([`S3Server`], from the testkit), the
//! config file of an `oci-cache` that keeps its blobs and tags in a bucket, and the peak
//! RSS of a process.

pub use oci_cache_testkit::s3::S3Server;

/// The config file of an `oci-cache` that keeps blobs and tags in
/// `s3://BUCKET/PREFIX`, with one upstream `upstream` at `upstream_url` and
/// the given tag freshness window.
pub fn s3_cache_config(
    bucket: &str,
    prefix: &str,
    upstream_url: &str,
    tag_ttl_secs: u64,
) -> String {
    format!(
        "storage = \"s3://{bucket}/{prefix}\"\n\n\
         [[upstreams]]\n\
         name = \"upstream\"\n\
         url = \"{upstream_url}\"\n\
         tag_ttl_secs = {tag_ttl_secs}\n"
    )
}

/// The peak resident set size (VmHWM) of a running process, in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected VmHWM line {line:?}"));
    kib * 1024
}

/// What may slow a test down on this machine, for failure messages: the page cache's dirty
/// and writeback bytes, the free disk space of the temporary directory, the load average.
pub fn machine_pressure() -> String {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem: Vec<&str> = meminfo
        .lines()
        .filter(|l| {
            ["MemAvailable:", "Dirty:", "Writeback:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let df = std::process::Command::new("df")
        .args(["-h", &std::env::temp_dir().to_string_lossy()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!("{mem:?}; load {}; {df}", load.trim())
}
