//! Keys an upstream can rotate while countersign holds them (TTS's access key
//! and secret). The configured value is the starting point; a rotated value
//! is written durably to the state store *before* anyone is told about it, and
//! wins over the configured one from the next request on, across restarts.
//!
//! A stored value records which configured value it replaced (by
//! fingerprint). When an operator puts a different key in the config, that
//! deliberate change wins and the stored rotation is ignored: the config is
//! never silently overridden by a rotation of some older key.
//!
//! A key is sent in a header and a JSON body: only visible ASCII of at most
//! 4 KiB is stored ([`check_key`]); anything else (a pushed key with a line
//! break) would break the route for every caller, across restarts.
//!
//! With Redis, replicas share the rotated keys: a rotation bumps a version
//! counter after storing the key, and every request first compares that
//! counter with the version it holds (one GET), so each replica switches on
//! its next request and none goes on with the revoked key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use zeroize::{Zeroize, Zeroizing};

use crate::config::OnStateFailure;
use crate::error::ProxyError;
use crate::secret::Secret;
use crate::state::{RedisState, StateStore};
use crate::vocab::fingerprint;

/// The longest key countersign stores (and a caller may push).
pub const MAX_KEY_LEN: usize = 4096;

/// Whether `value` can be a key: 1 to [`MAX_KEY_LEN`] bytes of visible
/// ASCII (no space, line break, control character or non-ASCII), so it
/// fits a header and cannot split one. `Err` says what is wrong, never the value.
pub fn check_key(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        Err("is empty")
    } else if value.len() > MAX_KEY_LEN {
        Err("is longer than 4 KiB")
    } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
        Err("holds a character that is not visible ASCII (a space, a line break, a control or non-ASCII character)")
    } else {
        Ok(())
    }
}

/// The rotatable keys of one credential.
pub struct HeldKeys {
    /// Credential identity, for state keys and logs (never a secret).
    id: String,
    /// `None` only for `explain`, which never rotates anything.
    store: Option<Arc<dyn StateStore>>,
    /// Name -> configured value: what a stored rotation must have replaced.
    configured: Vec<(&'static str, Secret)>,
    /// Name -> value in use now; swapped whole, read without a lock.
    current: ArcSwap<HashMap<&'static str, Secret>>,
    /// Loaded from the store once, before the first request uses a key.
    loaded: tokio::sync::OnceCell<()>,
    /// One rotation at a time, so two cannot interleave their writes.
    writing: tokio::sync::Mutex<()>,
    /// Redis, when replicas share the keys (also the `store` then).
    shared: Option<Arc<RedisState>>,
    /// The shared version counter's value when the keys were last read.
    version: AtomicU64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    /// Fingerprint of the configured value this rotation replaced.
    replaces: String,
    value: String,
}

/// The stored form holds a key: zeroed when dropped (inside `Zeroizing`).
impl Zeroize for Stored {
    fn zeroize(&mut self) {
        self.replaces.zeroize();
        self.value.zeroize();
    }
}

impl HeldKeys {
    pub fn new(
        id: String,
        store: Option<Arc<dyn StateStore>>,
        configured: Vec<(&'static str, Secret)>,
    ) -> Self {
        let current = configured.iter().cloned().collect();
        HeldKeys {
            id,
            store,
            configured,
            current: ArcSwap::from_pointee(current),
            loaded: tokio::sync::OnceCell::new(),
            writing: tokio::sync::Mutex::new(()),
            shared: None,
            version: AtomicU64::new(0),
        }
    }

    /// Keys shared with other replicas through Redis (which is also the store).
    fn shared(mut self, shared: Option<Arc<RedisState>>) -> Self {
        self.shared = shared;
        self
    }

    fn version_key(&self) -> Option<String> {
        self.shared
            .as_ref()
            .map(|st| st.key("keys-version", &self.id))
    }

    /// The value in use now.
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.current.load().get(name).cloned()
    }

    /// Every value in use now (for redaction).
    pub fn all(&self) -> Vec<(&'static str, Secret)> {
        self.current
            .load()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Whether [`HeldKeys::load`] has nothing to do: no store, or a local
    /// store already read. Shared keys are checked on every request.
    pub fn is_loaded(&self) -> bool {
        self.store.is_none() || (self.shared.is_none() && self.loaded.initialized())
    }

    fn state_key(&self, name: &str) -> String {
        format!("keys.{}.{name}", self.id)
    }

    /// Reads stored rotations: once per process from a local store; from
    /// Redis whenever another replica rotated a key since the last read.
    pub async fn load(&self) -> Result<(), ProxyError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let (Some(shared), Some(version_key)) = (&self.shared, self.version_key()) else {
            return self
                .loaded
                .get_or_try_init(|| self.read_stored(store.as_ref()))
                .await
                .map(|_| ());
        };
        let version = match shared.counter(&version_key).await {
            Ok(v) => v,
            Err(e) => {
                return match shared.policy {
                    OnStateFailure::FailClosed => Err(ProxyError::from(e)),
                    // Redis is down: keep the keys as last read.
                    OnStateFailure::Local => Ok(()),
                };
            }
        };
        if self.loaded.initialized() && version == self.version.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.writing.lock().await;
        self.read_stored(store.as_ref()).await?;
        self.version.store(version, Ordering::Release);
        let _ = self.loaded.set(());
        Ok(())
    }

    async fn read_stored(&self, store: &dyn StateStore) -> Result<(), ProxyError> {
        let mut next: HashMap<&'static str, Secret> = self.configured.iter().cloned().collect();
        for (name, configured) in &self.configured {
            let raw = store
                .get(&self.state_key(name))
                .await
                .map_err(ProxyError::from)?;
            let Some(raw) = raw else { continue };
            let raw = Zeroizing::new(raw);
            let Ok(stored) = serde_json::from_str::<Stored>(&raw) else {
                tracing::error!(credential = %self.id, key = name, "stored rotated key is unreadable; using the configured one");
                continue;
            };
            let mut stored = Zeroizing::new(stored);
            if let Err(why) = check_key(&stored.value) {
                tracing::error!(
                    credential = %self.id,
                    key = name,
                    state_key = %self.state_key(name),
                    "STORED ROTATED KEY IS INVALID: it {why}; it is ignored and the configured key is used (put the upstream's current key in the config, or remove the stored one)"
                );
                continue;
            }
            if stored.replaces == fingerprint(configured) {
                if self
                    .get(name)
                    .is_none_or(|cur| cur.expose() != stored.value)
                {
                    tracing::info!(credential = %self.id, key = name, "using the rotated key from the state store");
                }
                next.insert(name, Secret::new(std::mem::take(&mut stored.value)));
            } else {
                tracing::warn!(credential = %self.id, key = name, "the configured key changed since the last rotation; the configured one wins");
            }
        }
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Makes `value` the key in use, durably: it is in the store before this returns.
    pub async fn replace(&self, name: &'static str, value: Secret) -> Result<(), ProxyError> {
        let Some((_, configured)) = self.configured.iter().find(|(n, _)| *n == name) else {
            return Err(ProxyError::Internal(format!("no rotatable key {name}")));
        };
        if let Err(why) = check_key(value.expose()) {
            tracing::error!(credential = %self.id, key = name, "the new key {why}: not stored, the old key is kept");
            return Err(ProxyError::KeyRotation(format!(
                "the upstream's new {name} {why}: countersign cannot send it, so it is not stored and the old key is kept; later calls may fail until the config holds a usable key"
            )));
        }
        let _one = self.writing.lock().await;
        let written = match &self.store {
            Some(store) => {
                let stored = Zeroizing::new(Stored {
                    replaces: fingerprint(configured),
                    value: value.expose().to_string(),
                });
                let text = serde_json::to_string(&*stored)
                    .map_err(|e| ProxyError::Internal(e.to_string()))?;
                let put = store
                    .put(&self.state_key(name), text)
                    .await
                    .map_err(ProxyError::from);
                // Stored first, then announced: a replica that sees the new
                // version reads the new key.
                match (put, &self.shared, self.version_key()) {
                    (Ok(()), Some(shared), Some(vk)) => match shared.bump(&vk).await {
                        Ok(v) => {
                            self.version.store(v, Ordering::Release);
                            Ok(())
                        }
                        Err(e) => Err(ProxyError::from(e)),
                    },
                    (put, _, _) => put,
                }
            }
            None => Ok(()),
        };
        // The upstream has already switched: the new key is the only one that
        // works, so it is used even when it could not be stored (and the
        // caller hears about that).
        let mut next = (**self.current.load()).clone();
        next.insert(name, value);
        self.current.store(Arc::new(next));
        match &written {
            Ok(()) => {
                tracing::info!(credential = %self.id, key = name, "rotated key stored and in use")
            }
            Err(e) => {
                tracing::error!(credential = %self.id, key = name, error = %e, "rotated key in use but NOT stored: a restart would use the old key; put the new key in the config")
            }
        }
        written
    }
}

/// Held keys by credential and configured values, kept across reloads so a
/// rotation made on an old snapshot is seen by the new one.
#[derive(Default)]
pub struct Keyring {
    store: Option<Arc<dyn StateStore>>,
    shared: Option<Arc<RedisState>>,
    held: Mutex<HashMap<String, Arc<HeldKeys>>>,
    /// Monotonic nonce counters by credential, kept across reloads.
    counters: Mutex<HashMap<String, Arc<crate::nonce::Monotonic>>>,
}

impl Keyring {
    pub fn new(store: Arc<dyn StateStore>, shared: Option<Arc<RedisState>>) -> Self {
        Keyring {
            store: Some(store),
            shared,
            held: Mutex::default(),
            counters: Mutex::default(),
        }
    }

    /// A keyring that reads and writes nothing (for `explain`).
    pub fn detached() -> Self {
        Keyring::default()
    }

    /// The monotonic counter of credential `id` (one per credential, kept
    /// across reloads so values never go back when a config is reloaded).
    pub fn monotonic(&self, id: &str) -> Arc<crate::nonce::Monotonic> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(crate::nonce::Monotonic::new(
                    id,
                    self.store.clone(),
                    self.shared.clone(),
                ))
            })
            .clone()
    }

    /// Drops the keys no kind holds any more (a reload replaced or removed
    /// them): their values are zeroed, not kept for the process's life.
    pub fn prune(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, k| Arc::strong_count(k) > 1);
    }

    /// How many credentials' keys are held (tests).
    pub fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no keys are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of the rotatable keys held for credential `id`.
    pub fn names(&self, id: &str) -> Vec<&'static str> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&'static str> = held
            .values()
            .filter(|k| k.id == id)
            .flat_map(|k| k.configured.iter().map(|(n, _)| *n))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn get(&self, id: &str, configured: Vec<(&'static str, Secret)>) -> Arc<HeldKeys> {
        let mut key = id.to_string();
        for (name, v) in &configured {
            key.push_str(&format!("/{name}={}", fingerprint(v)));
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.entry(key)
            .or_insert_with(|| {
                Arc::new(
                    HeldKeys::new(id.to_string(), self.store.clone(), configured)
                        .shared(self.shared.clone()),
                )
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileStore;

    fn configured() -> Vec<(&'static str, Secret)> {
        vec![
            ("access_key", Secret::new("AK-config")),
            ("secret", Secret::new("SK-config")),
        ]
    }

    #[tokio::test]
    async fn rotation_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let keys = HeldKeys::new("tts-x".into(), Some(store.clone()), configured());
        keys.load().await.unwrap();
        keys.replace("access_key", Secret::new("AK-new"))
            .await
            .unwrap();
        assert_eq!(keys.get("access_key").unwrap().expose(), "AK-new");
        // A new process on the same store.
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let again = HeldKeys::new("tts-x".into(), Some(store), configured());
        assert_eq!(again.get("access_key").unwrap().expose(), "AK-config");
        again.load().await.unwrap();
        assert_eq!(again.get("access_key").unwrap().expose(), "AK-new");
        assert_eq!(again.get("secret").unwrap().expose(), "SK-config");
    }

    #[tokio::test]
    async fn a_new_configured_key_wins_over_an_old_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let keys = HeldKeys::new("tts-x".into(), Some(store.clone()), configured());
        keys.replace("secret", Secret::new("SK-rotated"))
            .await
            .unwrap();
        let operator = vec![
            ("access_key", Secret::new("AK-config")),
            ("secret", Secret::new("SK-operator")),
        ];
        let again = HeldKeys::new("tts-x".into(), Some(store), operator);
        again.load().await.unwrap();
        assert_eq!(again.get("secret").unwrap().expose(), "SK-operator");
    }

    #[test]
    fn keyring_shares_by_credential_and_configured_values() {
        let ring = Keyring::detached();
        let a = ring.get("tts-x", configured());
        let b = ring.get("tts-x", configured());
        assert!(Arc::ptr_eq(&a, &b));
        let other = vec![("access_key", Secret::new("AK-2"))];
        assert!(!Arc::ptr_eq(&a, &ring.get("tts-x", other)));
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_sent_is_never_stored_and_the_old_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        let keys = HeldKeys::new("tts-x".into(), Some(store.clone()), configured());
        keys.load().await.unwrap();
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "AK-new\nX-Injected: 1",
            "AK new",
            "AK-\u{e9}",
            "",
            long.as_str(),
        ] {
            let e = keys
                .replace("access_key", Secret::new(bad))
                .await
                .unwrap_err();
            assert_eq!(e.code(), "key_rotation_failed");
            assert!(bad.is_empty() || !e.to_string().contains(bad));
            assert_eq!(keys.get("access_key").unwrap().expose(), "AK-config");
        }
        assert_eq!(store.get("keys.tts-x.access_key").await.unwrap(), None);
        let max = "k".repeat(MAX_KEY_LEN);
        keys.replace("access_key", Secret::new(max.clone()))
            .await
            .unwrap();
        assert_eq!(keys.get("access_key").unwrap().expose(), max);
    }

    #[tokio::test]
    async fn an_invalid_stored_key_is_ignored_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(FileStore::open(dir.path()).unwrap());
        // What an earlier version stored from a push with a line break.
        let stored = serde_json::json!({
            "replaces": fingerprint(&Secret::new("AK-config")),
            "value": "AK-pushed\n",
        });
        store
            .put("keys.tts-x.access_key", stored.to_string())
            .await
            .unwrap();
        let keys = HeldKeys::new("tts-x".into(), Some(store), configured());
        keys.load().await.unwrap();
        assert_eq!(keys.get("access_key").unwrap().expose(), "AK-config");
    }
}
