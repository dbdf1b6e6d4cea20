//! Who the replicas are, and which of them owns a digest.
//!
//! The members are a static list of base URLs, or the addresses a DNS name (a headless
//! Kubernetes Service) resolves to, refreshed every [`REFRESH`]. The owner of a digest is
//! the member with the highest rendezvous score `sha256(member URL, digest)`: every replica
//! that sees the same members picks the same owner, and a member that comes or goes moves
//! only the digests it owned (so a change of members costs at most a duplicate download).

use std::sync::Arc;
use std::time::Duration;

use oci_cache_core::Digest;
use parking_lot::RwLock;
use sha2::{Digest as _, Sha256};

/// How often a DNS name of the peers is resolved again.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The members, as normalised base URLs (`http://host:port`, no trailing slash).
#[derive(Debug, Default)]
pub struct Members {
    urls: RwLock<Arc<Vec<String>>>,
}

impl Members {
    /// Members from a list of base URLs.
    pub fn new(urls: impl IntoIterator<Item = String>) -> Self {
        let members = Self::default();
        members.set(urls);
        members
    }

    /// Replaces the members (sorted, without duplicates).
    pub fn set(&self, urls: impl IntoIterator<Item = String>) {
        let mut urls: Vec<String> = urls.into_iter().map(|u| normalise(&u)).collect();
        urls.sort();
        urls.dedup();
        *self.urls.write() = Arc::new(urls);
    }

    /// The current members.
    pub fn list(&self) -> Arc<Vec<String>> {
        Arc::clone(&self.urls.read())
    }

    /// The member that owns `digest` (`None` without members).
    pub fn owner(&self, digest: &Digest) -> Option<String> {
        let urls = self.list();
        urls.iter().max_by_key(|url| score(url, digest)).cloned()
    }
}

/// `http://host:port` without a trailing slash.
pub fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The rendezvous score of `member` for `digest`.
fn score(member: &str, digest: &Digest) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(member.as_bytes());
    h.update(b"\n");
    h.update(digest.to_string().as_bytes());
    h.finalize().into()
}

/// Resolves `host:port` to the members' base URLs (`http://ADDR:PORT`).
pub(super) async fn resolve(name: &str) -> std::io::Result<Vec<String>> {
    let addrs = tokio::net::lookup_host(name).await?;
    Ok(addrs.map(|a| format!("http://{a}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(n: u32) -> Vec<Digest> {
        (0..n)
            .map(|i| Digest::sha256_of(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_replica_picks_the_same_owner_and_all_members_own_some() {
        let a = Members::new([
            "http://a:5000/".to_owned(),
            "http://b:5000".into(),
            "http://c:5000".into(),
        ]);
        let b = Members::new([
            "http://c:5000".to_owned(),
            "http://a:5000".into(),
            "http://b:5000".into(),
        ]);
        let mut per_member = std::collections::HashMap::new();
        for d in digests(300) {
            let owner = a.owner(&d).unwrap();
            assert_eq!(Some(&owner), b.owner(&d).as_ref());
            *per_member.entry(owner).or_insert(0) += 1;
        }
        assert_eq!(per_member.len(), 3, "{per_member:?}");
        assert!(per_member.values().all(|n| *n > 50), "{per_member:?}");
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_digests() {
        let three = Members::new([
            "http://a:1".to_owned(),
            "http://b:1".into(),
            "http://c:1".into(),
        ]);
        let two = Members::new(["http://a:1".to_owned(), "http://b:1".into()]);
        for d in digests(300) {
            let before = three.owner(&d).unwrap();
            if before != "http://c:1" {
                assert_eq!(two.owner(&d).unwrap(), before);
            }
        }
        assert_eq!(Members::default().owner(&digests(1)[0]), None);
    }
}
