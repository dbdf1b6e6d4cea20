//! Password checks against htpasswd bcrypt hashes, bounded so that wrong passwords cannot
//! take the blocking pool or tell which users exist:
//!
//! - at most [`MAX_VERIFICATIONS`] bcrypt checks run at once; a check that finds them all
//!   busy fails at once with [`AuthError::Busy`] (429) instead of queueing;
//! - a right password is remembered for 5 minutes, a wrong one for [`FAILED_TTL`], so the
//!   same credentials cost one bcrypt check in that time; what is remembered is a keyed
//!   SHA-256 of user and password (the key made at start, never stored), not the password;
//! - an unknown user costs the same as a known one: the password is checked against a
//!   dummy hash of the highest cost among the users.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::AuthError;

/// bcrypt checks that may run at once.
pub(crate) const MAX_VERIFICATIONS: usize = 2;
/// A right password is remembered this long.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// A wrong password is remembered this long.
pub(crate) const FAILED_TTL: Duration = Duration::from_secs(30);
/// Remembered credentials per outcome at most; past that, new ones are not remembered.
const MAX_REMEMBERED: usize = 4096;

/// htpasswd users and the bounded checks of their passwords. `Debug` shows user names only.
pub(crate) struct Passwords {
    users: HashMap<String, String>,
    /// Checked for an unknown user (none when there are no users).
    dummy: Option<String>,
    key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    failed: Mutex<HashMap<[u8; 32], Instant>>,
    verifying: Arc<Semaphore>,
    bcrypt_runs: AtomicU64,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Users from htpasswd entries (user → bcrypt hash).
    pub(crate) fn new(users: HashMap<String, String>) -> Self {
        let cost = users.values().filter_map(|h| cost_of(h)).max();
        // Any password will do: the dummy is never meant to match.
        let dummy = cost.and_then(|c| bcrypt::hash("oci-cache dummy password", c).ok());
        let state = std::collections::hash_map::RandomState::new();
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&state.hash_one(i).to_le_bytes());
        }
        Self {
            users,
            dummy,
            key,
            verified: Mutex::default(),
            failed: Mutex::default(),
            verifying: Arc::new(Semaphore::new(MAX_VERIFICATIONS)),
            bcrypt_runs: AtomicU64::new(0),
        }
    }

    /// bcrypt checks started so far.
    pub(crate) fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    /// Checks `user`'s password.
    pub(crate) async fn check(&self, user: &str, password: &str) -> Result<(), AuthError> {
        let key = self.fingerprint(user, password);
        if remembered(&self.verified, &key, VERIFIED_TTL) {
            return Ok(());
        }
        if remembered(&self.failed, &key, FAILED_TTL) {
            return Err(AuthError::InvalidCredentials);
        }
        let known = self.users.get(user);
        let Some(hash) = known.or(self.dummy.as_ref()).cloned() else {
            return Err(AuthError::InvalidCredentials);
        };
        let permit = Arc::clone(&self.verifying)
            .try_acquire_owned()
            .map_err(|_| AuthError::Busy)?;
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let password = password.to_owned();
        // The permit goes with the check: it is released when bcrypt is done, even if the
        // request that asked is gone.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = matched && known.is_some();
        if ok {
            remember(&self.verified, key, VERIFIED_TTL);
        } else {
            remember(&self.failed, key, FAILED_TTL);
        }
        if ok {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }

    /// A keyed hash of the credentials (the key is this process's, so the hash cannot be
    /// tried against password lists elsewhere).
    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }
}

/// The cost of a bcrypt hash (`$2b$12$...` is 12).
fn cost_of(hash: &str) -> Option<u32> {
    hash.get(4..6)?.parse().ok()
}

fn remembered(map: &Mutex<HashMap<[u8; 32], Instant>>, key: &[u8; 32], ttl: Duration) -> bool {
    map.lock().get(key).is_some_and(|at| at.elapsed() < ttl)
}

/// Remembers `key` in a map whose entries live `ttl`; when the map is full of live entries,
/// the oldest one makes room, so the newest failures are always remembered.
fn remember(map: &Mutex<HashMap<[u8; 32], Instant>>, key: [u8; 32], ttl: Duration) {
    let mut m = map.lock();
    if m.len() >= MAX_REMEMBERED {
        m.retain(|_, at| at.elapsed() < ttl);
    }
    if m.len() >= MAX_REMEMBERED {
        let oldest = m.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k);
        if let Some(oldest) = oldest {
            m.remove(&oldest);
        }
    }
    m.insert(key, Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords() -> Passwords {
        let hash = bcrypt::hash("pw", 4).unwrap();
        Passwords::new(HashMap::from([("alice".to_owned(), hash)]))
    }

    #[tokio::test]
    async fn a_wrong_password_costs_one_bcrypt_check_while_remembered() {
        let p = passwords();
        assert_eq!(
            p.check("alice", "wrong").await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(p.bcrypt_runs(), 1);
        for _ in 0..5 {
            assert_eq!(
                p.check("alice", "wrong").await,
                Err(AuthError::InvalidCredentials)
            );
        }
        assert_eq!(p.bcrypt_runs(), 1, "answered from the failure cache");
        assert_eq!(
            p.check("alice", "wrong2").await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(p.bcrypt_runs(), 2, "other credentials are checked");
        assert_eq!(p.check("alice", "pw").await, Ok(()));
        assert_eq!(p.check("alice", "pw").await, Ok(()));
        assert_eq!(p.bcrypt_runs(), 3, "a right password is remembered too");
    }

    #[tokio::test]
    async fn an_unknown_user_costs_a_bcrypt_check_of_the_same_cost() {
        let p = passwords();
        assert_eq!(cost_of(p.dummy.as_deref().unwrap()), Some(4));
        assert_eq!(
            p.check("mallory", "pw").await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(p.bcrypt_runs(), 1);
        // Even the dummy's own password does not let an unknown user in.
        assert_eq!(
            p.check("mallory", "oci-cache dummy password").await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(p.bcrypt_runs(), 2);
    }

    #[tokio::test]
    async fn checks_beyond_the_bound_are_refused_at_once() {
        let p = passwords();
        // Every slot taken, as by MAX_VERIFICATIONS slow checks in flight.
        let held = Arc::clone(&p.verifying)
            .try_acquire_many_owned(MAX_VERIFICATIONS as u32)
            .unwrap();
        assert_eq!(p.check("alice", "wrong").await, Err(AuthError::Busy));
        assert_eq!(p.check("mallory", "x").await, Err(AuthError::Busy));
        assert_eq!(p.bcrypt_runs(), 0, "no bcrypt check was queued");
        drop(held);
        assert_eq!(
            p.check("alice", "wrong").await,
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(p.bcrypt_runs(), 1);
        assert_eq!(p.verifying.available_permits(), MAX_VERIFICATIONS);
    }

    #[test]
    fn debug_shows_no_hashes_and_the_cache_keeps_no_password() {
        let p = passwords();
        let text = format!("{p:?}");
        assert!(text.contains("alice") && !text.contains("$2"), "{text}");
        assert_ne!(p.fingerprint("alice", "pw"), p.fingerprint("alic", "epw"));
        assert_ne!(
            p.fingerprint("alice", "pw"),
            passwords().fingerprint("alice", "pw"),
            "keyed: the same credentials hash differently elsewhere"
        );
    }
}
