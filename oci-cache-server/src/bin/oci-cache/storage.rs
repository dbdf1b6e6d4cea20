//! Opening the configured storage.

use std::sync::Arc;

use oci_cache_server::config::Config;
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::{BlobStore, TagStore};

/// The opened stores, or why they could not be opened.
type Stores = Result<(Arc<dyn BlobStore>, Arc<dyn TagStore>), Box<dyn std::error::Error>>;

/// The configured storage for a one-shot job beside a running cache: the filesystem store
/// is opened without sweeping its temporary files (they may be the cache's writes), and S3
/// without the local tier (the running cache's own).
pub(crate) async fn open_storage_shared(config: &Config) -> Stores {
    match config.storage.as_deref() {
        None => {
            let store = Arc::new(FsStore::open_shared(config.data_dir.join("store")).await?);
            Ok((store.clone(), store))
        }
        Some(url) => open_s3(config, url),
    }
}

/// The configured storage: S3 when `storage` names a bucket (with the local tier in front
/// unless `local_tier_bytes` is 0), else the filesystem.
pub(crate) async fn open_storage(config: &Config) -> Stores {
    let Some(url) = config.storage.as_deref() else {
        let store = Arc::new(FsStore::open(config.data_dir.join("store")).await?);
        return Ok((store.clone(), store));
    };
    let (blobs, tags) = open_s3(config, url)?;
    if config.local_tier_bytes == 0 {
        tracing::info!(storage = url, "blobs and tags in S3, no local tier");
        return Ok((blobs, tags));
    }
    let dir = config.data_dir.join("local-tier");
    let tiered = Arc::new(
        oci_cache_storage::tiered::TieredStore::open(blobs, tags, &dir, config.local_tier_bytes)
            .await?,
    );
    tracing::info!(
        storage = url,
        local_tier = %dir.display(),
        local_tier_bytes = config.local_tier_bytes,
        held = tiered.local_bytes(),
        "blobs and tags in S3, recently used ones on the local disk too"
    );
    Ok((tiered.clone(), tiered))
}

#[cfg(feature = "s3")]
fn open_s3(config: &Config, url: &str) -> Stores {
    let store = Arc::new(
        oci_cache_storage::s3::S3Store::from_url(url)?.with_touch_interval(config.gc.touch_every()),
    );
    Ok((store.clone(), store))
}

#[cfg(not(feature = "s3"))]
fn open_s3(_config: &Config, url: &str) -> Stores {
    Err(format!("storage {url:?} needs the s3 feature").into())
}
