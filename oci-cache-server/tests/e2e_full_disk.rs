//! End to end: a full disk never fails a pull. With the spool or the store's filesystem
//! full, pulls pass through without storing and are stored again once space returns.

// Test helpers outside `#[test]` functions panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::cache_home::{stored_blob_path, CacheHome};
use support::lifecycle::{metric, push_multilayer, scrape_metrics, PushedImage, TmpfsMount};
use support::lifecycle_e2e::*;
use support::{short_tempdir, skopeo_copy_to_oci_dir, wait_until, AuthRegistry, PUSH_CREDS};

// ---------------------------------------------------------------------------
// A full disk.
// ---------------------------------------------------------------------------

#[test]
fn a_full_disk_never_fails_a_pull() {
    // The whole data directory (store and spool) on a full filesystem.
    full_disk_pulls(FullDisk::DataDir);
}

#[test]
fn a_full_store_filesystem_passes_pulls_through_and_stores_again_once_freed() {
    // Only DATA_DIR/store on a full filesystem; the spool (DATA_DIR/spool) has room.
    full_disk_pulls(FullDisk::StoreOnly);
}

/// Which directory the tiny filesystem is mounted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FullDisk {
    DataDir,
    StoreOnly,
}

/// A cache whose data (or store) directory is a 16 MiB tmpfs that a filler file
/// has filled: a ~6 MiB image pulls with the right digests, nothing stored and
/// `oci_cache_pass_through_bytes_total` > 0; with the filler gone, the next
/// image is stored.
fn full_disk_pulls(which: FullDisk) {
    let auth = AuthRegistry::start(&[]);
    let reg = &auth.registry;
    let first = push_multilayer(reg, Some(PUSH_CREDS), "test/full", 1101, 2, 3 * 1024);
    let second = push_multilayer(reg, Some(PUSH_CREDS), "test/roomy", 1102, 2, 3 * 1024);
    let mut home = CacheHome::new(&config("upstream", &reg.url(), "", "max_age_secs = 0"));
    let mount_point = match which {
        FullDisk::DataDir => home.data_dir(),
        FullDisk::StoreOnly => home.store_dir(),
    };
    let mount = TmpfsMount::mount(&mount_point, 16 * MIB)
        .unwrap_or_else(|e| panic!("cannot give the cache a tiny filesystem: {e}"));
    let run = home.start();
    let filled = mount.fill("filler");
    eprintln!(
        "{which:?}: tmpfs of 16 MiB on {}; the filler took {filled} bytes",
        mount_point.display()
    );
    let cache_ref =
        |img: &PushedImage| format!("docker://127.0.0.1:{}/{}", run.port, img.name_tag());
    let logs = || format!("{}\n{}", run.log_tail(), auth.logs());
    let store = home.store_dir();
    let out = short_tempdir("e2e-full-");

    let digest = skopeo_copy_to_oci_dir(&cache_ref(&first), &out.path().join("full"), false, None)
        .unwrap_or_else(|e| {
            panic!(
                "{which:?}: a pull through a cache on a full disk failed: {e}\n{}",
                logs()
            )
        });
    assert_eq!(digest, first.digest);
    let m = scrape_metrics(&run.url());
    let passed = metric(&m, PASS_THROUGH);
    eprintln!("{which:?}: full disk: pass-through {passed} bytes");
    let layer_bytes: u64 = first.blobs[2..].iter().map(|(_, n)| n).sum();
    assert!(
        passed >= layer_bytes,
        "every layer byte ({layer_bytes}) went through unstored\n{m}"
    );
    for layer in first.layers() {
        assert!(
            !stored_blob_path(&store, &layer).is_file(),
            "{layer} stored on a full disk?"
        );
    }

    // Room again: the next pull is stored.
    std::fs::remove_file(mount.path().join("filler")).expect("remove the filler");
    let digest =
        skopeo_copy_to_oci_dir(&cache_ref(&second), &out.path().join("roomy"), false, None)
            .unwrap_or_else(|e| {
                panic!(
                    "{which:?}: a pull after freeing space failed: {e}\n{}",
                    logs()
                )
            });
    assert_eq!(digest, second.digest);
    let paths = second.paths(&store);
    wait_until(
        "the second image stored",
        Duration::from_secs(30),
        || paths.iter().all(|p| p.is_file()).then_some(()),
        logs,
    );
    assert_eq!(
        metric(&scrape_metrics(&run.url()), PASS_THROUGH),
        passed,
        "stored bytes counted as pass-through"
    );
    // The cache stops before the filesystem goes.
    drop(run);
    drop(mount);
}
