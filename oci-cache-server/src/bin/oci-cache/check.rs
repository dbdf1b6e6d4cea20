//! `oci-cache check`: loads the configuration and reports, line by line, what a start would
//! hit: the config file, storage (written, read, listed and deleted with a probe object),
//! each upstream (reached, and a token for a public repository when it asks for one), TLS
//! files, and the listen addresses. Exits 0 only when every line is `ok`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;
use oci_cache_core::{UpstreamClient, UpstreamError};
use oci_cache_server::config::Config;
use oci_cache_server::tls::ReloadingCert;
use oci_cache_storage::{BlobStore, Digest};

use crate::args::CheckArgs;
use crate::storage::open_storage_shared;

/// How long each network check may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The report's lines so far, and whether any failed.
#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, what: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => println!("ok    {what}: {detail}"),
            Err(detail) => {
                self.failed = true;
                println!("FAIL  {what}: {detail}");
            }
        }
    }
}

pub(crate) fn check(args: &CheckArgs) -> ExitCode {
    let mut report = Report::default();
    let config = match args.source.load() {
        Ok(mut config) => {
            if let Some(dir) = &args.data_dir {
                config.data_dir.clone_from(dir);
            }
            let from = args.source.config.as_ref().map_or_else(
                || "defaults (no --config)".to_owned(),
                |p| p.display().to_string(),
            );
            report.line("config", Ok(from));
            config
        }
        Err(e) => {
            report.line("config", Err(e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    check_settings(&config, &mut report);
    check_listen(&config, &mut report);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            report.line("runtime", Err(e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        check_storage(&config, &mut report).await;
        check_upstreams(&config, &args.probe_repo, &mut report).await;
    });
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The checks that need no network: upstream list, access rules, eviction, peers, TLS.
fn check_settings(config: &Config, report: &mut Report) {
    report.line(
        "upstreams",
        config
            .upstream_configs()
            .map(|u| {
                u.iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .map_err(|e| e.to_string()),
    );
    report.line(
        "access rules",
        config
            .access_policy()
            .map(|_| "valid".to_owned())
            .map_err(|e| e.to_string()),
    );
    report.line(
        "eviction",
        config
            .gc
            .policy()
            .map(|p| match p.max_bytes {
                Some(max) => format!("max_bytes {max}"),
                None => "no size limit".to_owned(),
            })
            .map_err(|e| e.to_string()),
    );
    match config.peer_config() {
        Ok(None) => {}
        Ok(Some(_)) => report.line("peers", Ok("secret readable".to_owned())),
        Err(e) => report.line("peers", Err(e.to_string())),
    }
    if let Some(tls) = &config.tls {
        report.line(
            "tls",
            ReloadingCert::load(&tls.cert_file, &tls.key_file)
                .map(|_| format!("{} and its key load", tls.cert_file.display()))
                .map_err(|e| e.to_string()),
        );
    }
}

/// Whether each listen address can be bound now.
fn check_listen(config: &Config, report: &mut Report) {
    let mut addrs = vec![("listen", config.listen)];
    if let Some(admin) = config.admin_listen {
        addrs.push(("admin_listen", admin));
    }
    // Each held until all were tried: `admin_listen` equal to `listen` fails, as at start.
    let mut held = Vec::new();
    for (what, addr) in addrs {
        let bound = std::net::TcpListener::bind(addr);
        report.line(
            what,
            bound
                .as_ref()
                .map(|_| format!("{addr} is free"))
                .map_err(|e| format!("cannot listen on {addr}: {e}")),
        );
        held.push(bound);
    }
}

/// Storage: put, get, list and delete of a probe blob no cache ever asks for.
async fn check_storage(config: &Config, report: &mut Report) {
    let what = config
        .storage
        .clone()
        .unwrap_or_else(|| format!("filesystem {}", config.data_dir.join("store").display()));
    let spool = config.data_dir.join("spool");
    let spool_ok = std::fs::create_dir_all(&spool)
        .and_then(|()| tempfile_in(&spool))
        .map(|()| format!("{} writable", spool.display()))
        .map_err(|e| format!("{}: {e}", spool.display()));
    report.line("spool", spool_ok);
    let (blobs, _) = match open_storage_shared(config).await {
        Ok(stores) => stores,
        Err(e) => {
            report.line("storage", Err(format!("{what}: {e}")));
            return;
        }
    };
    let result = tokio::time::timeout(STEP_TIMEOUT * 3, probe(blobs))
        .await
        .unwrap_or_else(|_| Err("no answer within 60 s".to_owned()));
    if config.storage.is_none() {
        remove_empty_shards(&config.data_dir.join("store/blobs"));
    }
    report.line(
        "storage",
        result
            .map(|()| format!("{what}: put, get, list and delete work"))
            .map_err(|e| format!("{what}: {e}")),
    );
}

/// Removes the empty shard directories under `blobs` (`sha256/XX/`) the probe may have
/// made: made by another user than the cache's, they would keep it from storing there.
fn remove_empty_shards(blobs: &std::path::Path) {
    let Ok(algorithms) = std::fs::read_dir(blobs) else {
        return;
    };
    for alg in algorithms.flatten() {
        if let Ok(shards) = std::fs::read_dir(alg.path()) {
            for shard in shards.flatten() {
                // Only an empty directory goes.
                let _ = std::fs::remove_dir(shard.path());
            }
        }
    }
}

/// Creates and removes a file in `dir`.
fn tempfile_in(dir: &std::path::Path) -> std::io::Result<()> {
    let path = dir.join(format!(".oci-cache-check-{}", std::process::id()));
    std::fs::write(&path, b"probe")?;
    std::fs::remove_file(&path)
}

/// Writes, reads back, lists and deletes a probe blob.
async fn probe(blobs: Arc<dyn BlobStore>) -> Result<(), String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let bytes = Bytes::from(format!("oci-cache check probe {nanos}\n"));
    let digest = Digest::sha256_of(&bytes);
    let mut writer = blobs
        .writer(&digest, Some(bytes.len() as u64))
        .await
        .map_err(|e| format!("put: {e}"))?;
    writer
        .write(bytes.clone())
        .await
        .map_err(|e| format!("put: {e}"))?;
    writer.commit().await.map_err(|e| format!("put: {e}"))?;
    let read = async {
        let (_, _, stream) = blobs.get(&digest, None).await?;
        let chunks: Vec<Bytes> = stream.try_collect().await?;
        Ok::<_, oci_cache_storage::StorageError>(chunks.concat())
    };
    let got = read.await.map_err(|e| format!("get: {e}"));
    let listed = blobs
        .list(None, 1)
        .await
        .map(|_| ())
        .map_err(|e| format!("list: {e}"));
    let deleted = blobs
        .delete(&digest)
        .await
        .map_err(|e| format!("delete: {e}"));
    if got?[..] != bytes[..] {
        return Err("get: the probe read back differs from what was put".to_owned());
    }
    listed?;
    deleted
}

/// Each upstream: reachable, and its token flow works (a HEAD of `repo:latest`, which a
/// registry answers 200 or 404 once the client may ask).
async fn check_upstreams(config: &Config, repo: &str, report: &mut Report) {
    let Ok(configs) = config.upstream_configs() else {
        return;
    };
    for upstream in configs {
        let what = format!("upstream {}", upstream.name);
        let urls = upstream.endpoints.join(" ");
        let client = match UpstreamClient::new(upstream) {
            Ok(c) => c,
            Err(e) => {
                report.line(&what, Err(e.to_string()));
                continue;
            }
        };
        let asked = tokio::time::timeout(STEP_TIMEOUT, client.manifest(repo, "latest", true))
            .await
            .unwrap_or(Err(UpstreamError::Timeout));
        let result = match asked {
            Ok(_) | Err(UpstreamError::NotFound) => Ok(format!(
                "{urls} answers; {repo}:latest may be asked for (token, if any, issued)"
            )),
            Err(UpstreamError::Unauthorized | UpstreamError::Denied) => Err(format!(
                "{urls} refuses {repo}:latest: check its credentials (or pass --probe-repo with a repository they may pull)"
            )),
            Err(e) => Err(format!("{urls}: {e}")),
        };
        report.line(&what, result);
    }
}
