//! The tokio runtime and HTTP client the end-to-end tests drive requests with.

use std::time::Duration;

/// A multi-threaded runtime with `workers` threads.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A reqwest client whose whole requests time out after `timeout`.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    oci_cache_core::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}
