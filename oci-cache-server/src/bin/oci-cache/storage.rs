//! Opening the configured storage.

use std::sync::Arc;

use oci_cache_server::config::Config;
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::{BlobStore, TagStore};

/// The configured storage for a one-shot job beside a running cache: the filesystem store
/// is opened without sweeping its temporary files (they may be the cache's writes).
pub(crate) async fn open_storage_shared(
    config: &Config,
) -> Result<(Arc<dyn BlobStore>, Arc<dyn TagStore>), Box<dyn std::error::Error>> {
    if config.storage.is_none() {
        let store = Arc::new(FsStore::open_shared(config.data_dir.join("store")).await?);
        return Ok((store.clone(), store));
    }
    open_storage(config).await
}

/// The configured storage: S3 when `storage` names a bucket, else the filesystem.
pub(crate) async fn open_storage(
    config: &Config,
) -> Result<(Arc<dyn BlobStore>, Arc<dyn TagStore>), Box<dyn std::error::Error>> {
    match config.storage.as_deref() {
        None => {
            let store = Arc::new(FsStore::open(config.data_dir.join("store")).await?);
            Ok((store.clone(), store))
        }
        #[cfg(feature = "s3")]
        Some(url) => {
            let store = Arc::new(oci_cache_storage::s3::S3Store::from_url(url)?);
            tracing::info!(storage = url, "blobs and tags in S3");
            Ok((store.clone(), store))
        }
        #[cfg(not(feature = "s3"))]
        Some(url) => Err(format!("storage {url:?} needs the s3 feature").into()),
    }
}
