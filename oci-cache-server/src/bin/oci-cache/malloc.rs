//! glibc's malloc, set for a process that streams big blobs through short-lived buffers.
//!
//! The HTTP client reads an upstream's body into fresh buffers of a few hundred KiB, which a
//! fill keeps until its stages have hashed and stored them (up to about 12 MiB per fill).
//! With glibc's defaults each freed run of them at the top of a thread's heap went back to
//! the kernel (`madvise(MADV_DONTNEED)`), and the next buffers faulted in fresh zeroed
//! pages: 60 000 to 100 000 minor faults per cold GiB, about 5 % of the profile's samples
//! (`exc_page_fault`, `clear_page_erms` under the socket read, `madvise` under `free`). With
//! buffers of up to 4 MiB taken from the heaps and up to 32 MiB of free memory kept at a
//! heap's top, a cold GiB makes about 4 000 faults and costs the cache 8.7 % less CPU
//! (ARCHITECTURE.md, "Memory allocation", has the figures and what else was tried).
//!
//! The price: an idle process may keep up to 32 MiB free in each heap that big buffers
//! went through, about (runtime workers + 1) x 32 MiB, since those buffers are allocated
//! on the runtime's threads.
//!
//! An operator's own malloc settings win: with `GLIBC_TUNABLES` naming `glibc.malloc.*`,
//! or glibc's older `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`, nothing is set.

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
    if !operator_set(|name| std::env::var_os(name)) {
        set_thresholds();
    }
}

/// Whether the environment (read through `var`) sets any of malloc's parameters.
fn operator_set(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    let tunables =
        var("GLIBC_TUNABLES").is_some_and(|v| v.to_string_lossy().contains("glibc.malloc."));
    tunables
        || ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|name| var(name).is_some())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "mallopt has no safe wrapper; see the SAFETY note"
)]
fn set_thresholds() {
    // SAFETY: `mallopt` writes malloc's global parameters, which other threads' allocations
    // read without a lock; it is called first thing in `main`, while the process has no
    // other thread (no constructor starts one), with valid parameter numbers and values.
    // A refused value (return 0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() {}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::operator_set;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn an_operators_malloc_settings_win() {
        assert!(operator_set(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.trim_threshold=1048576"
        )])));
        assert!(operator_set(env(&[(
            "GLIBC_TUNABLES",
            "glibc.cpu.hwcaps=-AVX2:glibc.malloc.arena_max=2"
        )])));
        assert!(operator_set(env(&[("MALLOC_TRIM_THRESHOLD_", "1048576")])));
        assert!(operator_set(env(&[("MALLOC_MMAP_THRESHOLD_", "131072")])));
        assert!(!operator_set(env(&[(
            "GLIBC_TUNABLES",
            "glibc.cpu.hwcaps=-AVX2"
        )])));
        assert!(!operator_set(env(&[("MALLOC_ARENA_MAX", "2")])));
        assert!(!operator_set(env(&[])));
    }
}
