//! The many-clients load of the side-by-side benchmark: 200 clients pull a mix of 50
//! images (manifest by tag, then config, then layers of 4 KiB to 64 MiB) through a fresh
//! cache, so the first pulls of each image are cold and the rest warm. Bounded in pulls and
//! time.

use std::time::{Duration, Instant};

use crate::load::{verified_get, ACCEPT};
use crate::rounds::Blob;
use crate::upstream::oci_manifest;
use crate::{BoxError, Registry};

/// Images of the mix.
pub const IMAGES: usize = 50;
/// Clients pulling at once.
pub const CLIENTS: usize = 200;
/// Images each client pulls.
pub const PULLS_PER_CLIENT: usize = 2;
/// Time cap of the whole load.
pub const CAP: Duration = Duration::from_secs(60);

/// Layer sizes the images draw from.
const LAYER_SIZES: [u64; 4] = [4 << 10, 64 << 10, 1 << 20, 8 << 20];
/// Every this many images, one also has a 64 MiB layer.
const BIG_EVERY: usize = 25;

/// One image of the mix.
#[derive(Debug, Clone)]
pub struct MixedImage {
    /// Its tag in the benchmark's repository.
    pub tag: String,
    /// Its config blob.
    pub config: Blob,
    /// Its layers.
    pub layers: Vec<Blob>,
}

/// Pushes the [`IMAGES`] images of the mix to `repo` on `upstream`.
pub async fn seed(
    upstream: &mut Registry,
    client: &reqwest::Client,
    repo: &str,
) -> Result<Vec<MixedImage>, BoxError> {
    let mut images = Vec::with_capacity(IMAGES);
    for i in 0..IMAGES {
        let mut sizes = vec![LAYER_SIZES[i % 4], LAYER_SIZES[(i + 1) % 4]];
        if i % BIG_EVERY == 0 {
            sizes.push(64 << 20);
        }
        let mut layers = Vec::new();
        for (j, size) in sizes.into_iter().enumerate() {
            let seed = 10_000 + (i * 8 + j) as u64;
            let bytes: Vec<u8> = crate::random_chunks(seed, size, 1 << 20)
                .flatten()
                .collect();
            let digest = upstream.push_bytes(client, repo, bytes).await?;
            layers.push(Blob { digest, size });
        }
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"image":{i}}}"#
        );
        let config = Blob {
            size: config.len() as u64,
            digest: upstream
                .push_bytes(client, repo, config.into_bytes())
                .await?,
        };
        let refs: Vec<(&str, u64)> = layers.iter().map(|l| (l.digest.as_str(), l.size)).collect();
        let manifest = oci_manifest((&config.digest, config.size), &refs);
        let tag = format!("mix{i}");
        upstream.push_manifest(client, repo, &tag, manifest).await?;
        images.push(MixedImage {
            tag,
            config,
            layers,
        });
    }
    Ok(images)
}

/// Latencies by request kind, and what failed.
#[derive(Debug, Default)]
pub struct MixedRun {
    /// Manifest GETs by tag.
    pub manifests: Vec<Duration>,
    /// Config blob GETs.
    pub configs: Vec<Duration>,
    /// Layer GETs of at most 64 KiB.
    pub small_layers: Vec<Duration>,
    /// Layer GETs of 1 MiB and more.
    pub large_layers: Vec<Duration>,
    /// Failed requests.
    pub errors: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Wall time of the whole load.
    pub wall: Duration,
    /// Bytes received.
    pub bytes: u64,
}

impl MixedRun {
    fn merge(&mut self, other: MixedRun) {
        self.manifests.extend(other.manifests);
        self.configs.extend(other.configs);
        self.small_layers.extend(other.small_layers);
        self.large_layers.extend(other.large_layers);
        self.errors += other.errors;
        self.bytes += other.bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn failed(&mut self, e: &BoxError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

/// The `q` quantile (0..=1) of `latencies` in ms (NaN when empty).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "indexes are small and non-negative"
)]
pub fn quantile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort_unstable();
    let i = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
}

/// [`CLIENTS`] clients, each pulling [`PULLS_PER_CLIENT`] images of `images` from the
/// cache at `base` (`http://HOST:PORT`), stopped after [`CAP`].
pub async fn pull(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    images: &[MixedImage],
) -> Result<MixedRun, BoxError> {
    let started = Instant::now();
    let deadline = started + CAP;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, base, repo) = (client.clone(), base.to_owned(), repo.to_owned());
        let picks: Vec<MixedImage> = (0..PULLS_PER_CLIENT)
            .map(|k| images[(c * 7 + k * 13) % images.len()].clone())
            .collect();
        tasks.spawn(async move {
            let mut run = MixedRun::default();
            for image in picks {
                if Instant::now() >= deadline {
                    break;
                }
                pull_one(&client, &base, &repo, &image, &mut run).await;
            }
            run
        });
    }
    let mut all = MixedRun::default();
    while let Some(joined) = tasks.join_next().await {
        all.merge(joined?);
    }
    all.wall = started.elapsed();
    Ok(all)
}

/// One image: manifest by tag, config, layers in order; stops at the first failure.
async fn pull_one(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    image: &MixedImage,
    run: &mut MixedRun,
) {
    let sent = Instant::now();
    let manifest = client
        .get(format!("{base}/v2/{repo}/manifests/{}", image.tag))
        .header("accept", ACCEPT)
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match manifest {
        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
            Ok(body) => {
                run.bytes += body.len() as u64;
                run.manifests.push(sent.elapsed());
            }
            Err(e) => return run.failed(&e.into()),
        },
        Ok(resp) => {
            return run.failed(&format!("manifest {}: {}", image.tag, resp.status()).into())
        }
        Err(e) => return run.failed(&e.into()),
    }
    let blobs =
        std::iter::once((&image.config, true)).chain(image.layers.iter().map(|l| (l, false)));
    for (blob, is_config) in blobs {
        let url = format!("{base}/v2/{repo}/blobs/{}", blob.digest);
        match verified_get(client, &url, &blob.digest, blob.size).await {
            Ok(got) => {
                run.bytes += blob.size;
                let into = if is_config {
                    &mut run.configs
                } else if blob.size <= 64 << 10 {
                    &mut run.small_layers
                } else {
                    &mut run.large_layers
                };
                into.push(got.total);
            }
            Err(e) => return run.failed(&e),
        }
    }
}
