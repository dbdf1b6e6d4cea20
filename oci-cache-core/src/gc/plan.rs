//! Which blobs an eviction pass removes: the pure decision, given what is stored.
//!
//! OCI-aware: a top-level manifest (an index, or a manifest no index refers to) and
//! everything it references form one group. The group's last access is the newest of its
//! manifests' (every pull reads a manifest; a layer shared with another image says nothing
//! about this one).
//! Groups go least recently used first; a blob shared by a surviving group stays. Blobs no
//! manifest references form groups of their own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::Digest;

/// When and how much to evict. Start from [`GcPolicy::default`] and set the fields you
/// need; the struct is `#[non_exhaustive]`, so a field added later (with a default) does not
/// break that code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GcPolicy {
    /// Stored bytes allowed; `None` for no size limit.
    pub max_bytes: Option<u64>,
    /// Eviction starts when stored bytes exceed this fraction of `max_bytes`.
    pub high_watermark: f64,
    /// ... and goes on until they are at or below this fraction.
    pub low_watermark: f64,
    /// Groups not accessed for this long go, whatever the size; `None` for no age limit.
    pub max_age: Option<Duration>,
    /// A blob whose own last access is more recent than this is never evicted, as if it
    /// were being read. For several processes on one storage (replicas, or `oci-cache gc`
    /// beside a running cache), where a read in another process shows only as the blob's
    /// last access: that process refreshes it while the read lasts
    /// ([`EngineConfig::touch_every`](crate::EngineConfig::touch_every)), so with
    /// `min_idle` well above the refresh interval no read anywhere is cut. `None` (the
    /// default): only this process's own reads protect a blob.
    pub min_idle: Option<Duration>,
}

impl Default for GcPolicy {
    /// No size limit; a maximum age of 7 days; watermarks at 90 % and 80 %.
    fn default() -> Self {
        Self {
            max_bytes: None,
            high_watermark: 0.9,
            low_watermark: 0.8,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            min_idle: None,
        }
    }
}

/// One stored blob as the planner sees it.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// When it was last used.
    pub last_access: SystemTime,
    /// The blobs it references, when it is a manifest or index.
    pub refs: Vec<Digest>,
}

/// What a pass removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Blobs to delete, least recently used groups first.
    pub evict: Vec<Digest>,
    /// Bytes they hold.
    pub freed: u64,
    /// Bytes stored before the pass.
    pub total: u64,
    /// Blobs stored before the pass.
    pub objects: u64,
}

struct Group {
    members: Vec<Digest>,
    last_access: SystemTime,
}

/// Decides a pass. `in_use` blobs (being read now), and blobs used within the policy's
/// `min_idle`, are never chosen.
pub fn plan<S: std::hash::BuildHasher>(
    blobs: &[StoredBlob],
    in_use: &HashSet<Digest, S>,
    policy: &GcPolicy,
    now: SystemTime,
) -> GcPlan {
    let by_digest: HashMap<&Digest, &StoredBlob> = blobs.iter().map(|b| (&b.digest, b)).collect();
    let referenced: HashSet<&Digest> = blobs.iter().flat_map(|b| b.refs.iter()).collect();
    let mut groups: Vec<Group> = Vec::new();
    let mut grouped: HashSet<&Digest> = HashSet::new();
    for root in blobs
        .iter()
        .filter(|b| !b.refs.is_empty() && !referenced.contains(&b.digest))
    {
        let mut members = Vec::new();
        let mut stack = vec![&root.digest];
        let mut seen = HashSet::new();
        while let Some(d) = stack.pop() {
            let Some(b) = by_digest.get(d) else { continue };
            if !seen.insert(d) {
                continue;
            }
            members.push(d.clone());
            grouped.insert(d);
            stack.extend(b.refs.iter());
        }
        let last_access = members
            .iter()
            .filter_map(|d| by_digest.get(d))
            .filter(|b| !b.refs.is_empty())
            .map(|b| b.last_access)
            .max()
            .unwrap_or(root.last_access);
        groups.push(Group {
            members,
            last_access,
        });
    }
    for b in blobs.iter().filter(|b| !grouped.contains(&b.digest)) {
        groups.push(Group {
            members: vec![b.digest.clone()],
            last_access: b.last_access,
        });
    }
    groups.sort_by_key(|g| g.last_access);

    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let mut plan = GcPlan {
        total,
        objects: blobs.len() as u64,
        ..GcPlan::default()
    };
    #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)] // byte counts well below 2^52
    let (high, low) = policy.max_bytes.map_or((u64::MAX, u64::MAX), |m| {
        (
            (m as f64 * policy.high_watermark) as u64,
            (m as f64 * policy.low_watermark) as u64,
        )
    });
    let shrink = total > high;
    let cutoff = policy.max_age.and_then(|age| now.checked_sub(age));
    // How many groups hold each blob: a shared blob goes with the last group holding it.
    let mut holders: HashMap<Digest, usize> = HashMap::new();
    for d in groups.iter().flat_map(|g| g.members.iter()) {
        *holders.entry(d.clone()).or_default() += 1;
    }
    let recent_cutoff = policy.min_idle.and_then(|idle| now.checked_sub(idle));
    let recent: HashSet<&Digest> = blobs
        .iter()
        .filter(|b| recent_cutoff.is_some_and(|c| b.last_access > c))
        .map(|b| &b.digest)
        .collect();
    let mut remaining = total;
    for g in &groups {
        let too_old = cutoff.is_some_and(|c| g.last_access < c);
        let too_big = shrink && remaining > low;
        if !too_old && !too_big {
            // Later groups are newer, and the size target is met: nothing more goes.
            break;
        }
        if g.members
            .iter()
            .any(|d| in_use.contains(d) || recent.contains(d))
        {
            continue;
        }
        for d in &g.members {
            let count = holders.entry(d.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                let size = by_digest.get(d).map_or(0, |b| b.size);
                plan.evict.push(d.clone());
                plan.freed += size;
                remaining = remaining.saturating_sub(size);
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn blob(n: u8, size: u64, age_secs: u64, refs: &[u8], now: SystemTime) -> StoredBlob {
        StoredBlob {
            digest: d(n),
            size,
            last_access: now - Duration::from_secs(age_secs),
            refs: refs.iter().map(|r| d(*r)).collect(),
        }
    }

    fn policy(max: u64) -> GcPolicy {
        GcPolicy {
            max_bytes: Some(max),
            high_watermark: 0.9,
            low_watermark: 0.6,
            max_age: None,
            min_idle: None,
        }
    }

    #[test]
    fn below_the_high_watermark_nothing_goes() {
        let now = SystemTime::now();
        let blobs = [blob(1, 10, 100, &[2], now), blob(2, 80, 100, &[], now)];
        assert!(plan(&blobs, &HashSet::new(), &policy(100), now)
            .evict
            .is_empty());
    }

    #[test]
    fn least_recently_used_image_goes_whole_and_shared_layers_stay() {
        let now = SystemTime::now();
        // Image A (old): manifest 1 -> config 2, layer 9 (shared). Image B (new): 3 -> 4, 9.
        // 102 bytes stored, limit 100: shrink from above 90 to at most 60.
        let blobs = [
            blob(1, 1, 1000, &[2, 9], now),
            blob(2, 20, 1000, &[], now),
            blob(3, 1, 10, &[4, 9], now),
            blob(4, 20, 10, &[], now),
            blob(9, 30, 5, &[], now),
            blob(7, 30, 2000, &[], now), // an orphan, oldest
        ];
        let p = plan(&blobs, &HashSet::new(), &policy(100), now);
        assert_eq!(
            p.evict,
            vec![d(7), d(1), d(2)],
            "the orphan, then image A; layer 9 stays for B"
        );
        assert_eq!((p.freed, p.total), (51, 102));
    }

    #[test]
    fn the_image_group_uses_its_newest_member_and_in_use_blobs_stay() {
        let now = SystemTime::now();
        // Index 1 is old but its child manifest 2 was read recently: the group is recent.
        let blobs = [
            blob(1, 10, 5000, &[2], now),
            blob(2, 30, 1, &[5], now),
            blob(5, 1, 5000, &[], now),
            blob(3, 55, 100, &[], now),
        ];
        let p = plan(&blobs, &HashSet::new(), &policy(100), now);
        assert_eq!(p.evict, vec![d(3)]);
        let in_use = HashSet::from([d(3)]);
        let p = plan(&blobs, &in_use, &policy(100), now);
        let mut evicted = p.evict.clone();
        evicted.sort();
        let mut group = vec![d(1), d(2), d(5)];
        group.sort();
        assert_eq!(evicted, group, "3 is being read, so the next group goes");
    }

    #[test]
    fn max_age_evicts_old_groups_whatever_the_size() {
        let now = SystemTime::now();
        let blobs = [
            blob(1, 1, 10 * 86_400, &[2], now),
            blob(2, 1, 9 * 86_400, &[], now),
            blob(3, 1, 60, &[], now),
        ];
        let p = plan(&blobs, &HashSet::new(), &GcPolicy::default(), now);
        assert_eq!(p.evict, vec![d(1), d(2)]);
    }

    #[test]
    fn a_blob_used_within_min_idle_stays_even_in_an_old_group() {
        let now = SystemTime::now();
        // Layer 5 of the old image was read 10 s ago (by another process), so its whole
        // group stays; the lone blob 3 is idle and goes.
        let blobs = [
            blob(1, 10, 5000, &[5], now),
            blob(5, 60, 10, &[], now),
            blob(3, 30, 100, &[], now),
        ];
        let mut idle = policy(100);
        idle.max_age = Some(Duration::from_secs(50));
        let p = plan(&blobs, &HashSet::new(), &idle, now);
        assert_eq!(p.evict.len(), 3, "without min_idle all are old: {p:?}");
        idle.min_idle = Some(Duration::from_secs(60));
        let p = plan(&blobs, &HashSet::new(), &idle, now);
        assert_eq!(p.evict, vec![d(3)]);
    }
}
