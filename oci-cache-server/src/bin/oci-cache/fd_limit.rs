//! A warning at start when the process may not open as many files as the listeners may
//! hold connections: past that limit, accepts fail and so do storage reads.

/// Descriptors kept for storage files, upstream connections, spool files and the rest.
const HEADROOM: u64 = 256;

/// Warns when the soft limit on open files (from `/proc/self/limits`, Linux) is below
/// `connections` plus some headroom. Silent when the limit cannot be read.
pub(crate) fn warn_if_low(connections: usize) {
    let Ok(text) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let Some(soft) = soft_open_files(&text) else {
        return;
    };
    let needed = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(HEADROOM);
    if soft < needed {
        tracing::warn!(
            open_files_limit = soft,
            connections,
            "the open-files limit is below the connections the listeners may hold plus {HEADROOM}; \
             raise it (ulimit -n, LimitNOFILE=) or lower limits.max_open_connections"
        );
    }
}

/// The soft "Max open files" limit of a `/proc/PID/limits` text (`None` when unlimited or
/// absent).
fn soft_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::soft_open_files;

    #[test]
    fn reads_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 524288               files\n";
        assert_eq!(soft_open_files(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files(unlimited), None);
        assert_eq!(soft_open_files(""), None);
    }
}
