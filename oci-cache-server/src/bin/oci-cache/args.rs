//! The command-line arguments of each subcommand.

use std::path::PathBuf;

use oci_cache_server::config::{Config, UpstreamEntry};

#[derive(clap::Args)]
pub(crate) struct PrefetchArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Directory of the filesystem storage (default: the config's, else ./data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// A file of image references, one per line.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Image references, e.g. docker.io/library/alpine:3.20.
    pub(crate) references: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Directory of the filesystem storage (default: the config's, else ./data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Stored bytes allowed (overrides the config's gc.max_bytes).
    #[arg(long)]
    pub(crate) max_bytes: Option<u64>,
    /// Print what would be evicted; delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Directory of the filesystem storage (default: the config's, else ./data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Delete corrupt blobs instead of only reporting them.
    #[arg(long)]
    pub(crate) remove: bool,
}

/// Where the configuration comes from: a file, overridden by flags.
#[derive(clap::Args)]
pub(crate) struct Source {
    /// TOML configuration file.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// An upstream as NAME=URL; repeatable; the first is the default. Replaces the
    /// config file's upstreams.
    #[arg(long = "upstream", value_name = "NAME=URL")]
    pub(crate) upstreams: Vec<String>,
    /// Keep blobs and tags in S3: `s3://BUCKET/PREFIX` (endpoint, region and keys from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub(crate) storage: Option<String>,
}

impl Source {
    pub(crate) fn load(&self) -> Result<Config, Box<dyn std::error::Error>> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(storage) = &self.storage {
            config.storage = Some(storage.clone());
        }
        if !self.upstreams.is_empty() {
            config.upstreams = self
                .upstreams
                .iter()
                .map(|f| UpstreamEntry::from_flag(f))
                .collect::<Result<_, _>>()?;
        }
        Ok(config)
    }
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Address to listen on (default 0.0.0.0:5000).
    #[arg(long)]
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// Directory of the filesystem storage and the local spool (default ./data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key; overrides the config file's `[tls]`).
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    pub(crate) log_json: bool,
    /// Another replica (or this one) on the same storage, as a base URL; repeatable.
    /// Replaces the config file's `peers`.
    #[arg(long = "peer", value_name = "URL")]
    pub(crate) peers: Vec<String>,
    /// The file holding the replicas' shared secret.
    #[arg(long, value_name = "FILE")]
    pub(crate) peer_secret_file: Option<PathBuf>,
    /// This replica's URL as the other replicas reach it.
    #[arg(long, value_name = "URL")]
    pub(crate) advertise: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct ClientConfigArgs {
    /// The client: containerd, k3s, rke2, docker or podman.
    #[arg(value_parser = ["containerd", "k3s", "rke2", "docker", "podman"])]
    pub(crate) client: String,
    /// The URL clients reach the cache at.
    #[arg(long, default_value = "http://localhost:5000")]
    pub(crate) cache_url: String,
    #[command(flatten)]
    pub(crate) source: Source,
}

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Directory of the filesystem storage and the spool (default: the config's, else ./data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The repository whose `latest` each upstream is asked for (a HEAD), to check that it
    /// answers and its token flow works.
    #[arg(long, value_name = "REPO", default_value = "library/alpine")]
    pub(crate) probe_repo: String,
}

#[derive(clap::Args)]
pub(crate) struct HealthcheckArgs {
    /// The URL to ask; healthy when it answers 200. Default: `/healthz` on the `listen`
    /// port of --config (https with its `[tls]`, any certificate accepted), else
    /// http://127.0.0.1:5000/healthz.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// The configuration whose `listen` address to ask.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Accept any TLS certificate (the listener's name rarely matches 127.0.0.1).
    #[arg(long)]
    pub(crate) insecure: bool,
}
