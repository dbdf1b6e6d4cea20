//! glibc's malloc, set for a process that streams big blobs through short-lived buffers.
//!
//! The HTTP client reads an upstream's body into fresh buffers of a few hundred KiB, which a
//! fill keeps until its stages have hashed and stored them (up to about 8 MiB per fill).
//! With glibc's defaults each freed run of them at the top of a thread's heap went back to
//! the kernel (`madvise(MADV_DONTNEED)`), and the next buffers faulted in fresh zeroed pages:
//! 50 000 to 75 000 page faults per cold GiB, 11 % of the cache's CPU for it (`perf record`:
//! `exc_page_fault`, `clear_page_erms` under the socket read). With buffers of up to 4 MiB
//! taken from the heaps and up to 32 MiB of free memory kept at a heap's top, a cold GiB
//! makes about 4 000 faults and costs 12 % less CPU; peak RSS of one fill went from 24 to
//! 29 MiB (see ARCHITECTURE.md, "Memory allocation"). mimalloc and jemalloc were measured
//! too and not kept (ARCHITECTURE.md).
//!
//! An operator's own `GLIBC_TUNABLES` for malloc wins: the settings are left alone then.

/// Allocations up to this size come from the heaps, not from a mapping of their own
/// (which is unmapped again when freed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;
/// Free memory at the top of a heap is given back to the kernel only past this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 32 << 20;

/// Sets the thresholds; call first thing in `main`, before any other thread exists.
/// Nothing on other C libraries, or when `GLIBC_TUNABLES` sets malloc parameters.
pub(crate) fn tune() {
    if !sets_malloc(std::env::var_os("GLIBC_TUNABLES").as_deref()) {
        set_thresholds();
    }
}

/// Whether a `GLIBC_TUNABLES` value sets any of malloc's parameters.
fn sets_malloc(tunables: Option<&std::ffi::OsStr>) -> bool {
    tunables.is_some_and(|v| v.to_string_lossy().contains("glibc.malloc."))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt has no safe wrapper; see the SAFETY note"
)]
fn set_thresholds() {
    // SAFETY: `mallopt` only changes malloc's tunable parameters and is safe to call at any
    // time (it takes the arena locks); it is called before the runtime's threads start, with
    // valid parameter numbers and values. A refused value (return 0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() {}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::sets_malloc;

    #[test]
    fn an_operators_malloc_tunables_win() {
        assert!(sets_malloc(Some(OsStr::new(
            "glibc.malloc.trim_threshold=1048576"
        ))));
        assert!(sets_malloc(Some(OsStr::new(
            "glibc.cpu.hwcaps=-AVX2:glibc.malloc.arena_max=2"
        ))));
        assert!(!sets_malloc(Some(OsStr::new("glibc.cpu.hwcaps=-AVX2"))));
        assert!(!sets_malloc(None));
    }
}
