//! Paginated listing of the blob directory, in ascending digest order.

use std::io::{self, ErrorKind};
use std::path::Path;

use super::meta_of;
use crate::{Algorithm, BlobMeta, Digest, ListPage, StorageError};

/// Every algorithm, in the order of their names (which is also `Digest`'s order).
const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// The entry names of `dir`, sorted; a missing directory has none.
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Lists at most `limit` blobs after `after` (a `limit` of 0 counts as 1). Files that are
/// not named like a blob of their directory are ignored.
pub(super) fn list(
    blobs: &Path,
    after: Option<&Digest>,
    limit: usize,
) -> Result<ListPage, StorageError> {
    let limit = limit.max(1);
    let mut found: Vec<BlobMeta> = Vec::with_capacity(limit + 1);
    'algorithms: for algorithm in ALGORITHMS {
        if after.is_some_and(|a| a.algorithm() > algorithm) {
            continue;
        }
        // Within `after`'s algorithm, fan-out directories below its prefix hold nothing later.
        let floor = after
            .filter(|a| a.algorithm() == algorithm)
            .map(|a| &a.hex()[..2]);
        let alg_dir = blobs.join(algorithm.as_str());
        for fan_out in sorted_names(&alg_dir).map_err(StorageError::io("list blobs"))? {
            if floor.is_some_and(|f| fan_out.as_str() < f) {
                continue;
            }
            let fan_dir = alg_dir.join(&fan_out);
            for name in sorted_names(&fan_dir).map_err(StorageError::io("list blobs"))? {
                let Ok(digest) = Digest::parse(&format!("{}:{name}", algorithm.as_str())) else {
                    continue;
                };
                if !name.starts_with(fan_out.as_str()) || after.is_some_and(|a| &digest <= a) {
                    continue;
                }
                let md = match std::fs::metadata(fan_dir.join(&name)) {
                    Ok(md) => md,
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("stat blob")(e)),
                };
                found.push(meta_of(&digest, &md)?);
                if found.len() > limit {
                    break 'algorithms;
                }
            }
        }
    }
    let next = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|m| m.digest.clone())
    } else {
        None
    };
    Ok(ListPage { blobs: found, next })
}
