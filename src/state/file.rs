//! The embedded state store: one small file per key in `state_dir`, replaced
//! atomically (write to a temporary file, fsync, rename, fsync the directory),
//! so a crash leaves either the old value or the new one, never half of each.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{StateError, StateStore};

pub struct FileStore {
    dir: Arc<PathBuf>,
    /// Makes temporary file names unique when two writes of one key overlap.
    seq: AtomicU64,
}

impl FileStore {
    /// Opens (creating if needed) the directory and checks that it is writable.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(|e| {
            StateError::caused(format!("state_dir {} cannot be created", dir.display()), e)
        })?;
        let probe = dir.join(".countersign-write-test");
        File::create(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| {
                StateError::caused(format!("state_dir {} is not writable", dir.display()), e)
            })?;
        Ok(FileStore {
            dir: Arc::new(dir.to_path_buf()),
            seq: AtomicU64::new(0),
        })
    }

    fn path_of(dir: &Path, key: &str) -> PathBuf {
        // Keys are ASCII identities; anything else is replaced so a key can never
        // name a path outside the directory.
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(name.trim_start_matches('.'))
    }
}

fn write_atomically(dir: &Path, path: &Path, tmp: &Path, value: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    // Values include rotated upstream keys: readable by this user only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.write(true).create(true).truncate(true).open(tmp)?;
    f.write_all(value)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()
}

impl StateStore for FileStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        let path = Self::path_of(&self.dir, key);
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || fs::read_to_string(&path))
                .await
                .map_err(|e| StateError::caused("the state store's reader stopped", e))?;
            match read {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StateError::caused(format!("reading {key}"), e)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<(), StateError>> {
        let dir = Arc::clone(&self.dir);
        let path = Self::path_of(&dir, key);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                write_atomically(&dir, &path, &tmp, value.as_bytes()).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
            })
            .await
            .map_err(|e| StateError::caused("the state store's writer stopped", e))?
            .map_err(|e| StateError::caused(format!("writing {key}"), e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_roundtrip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.get("quota.a-2026-11").await.unwrap(), None);
        store.put("quota.a-2026-11", "5".into()).await.unwrap();
        store.put("quota.a-2026-11", "6".into()).await.unwrap();
        assert_eq!(
            store.get("quota.a-2026-11").await.unwrap().as_deref(),
            Some("6")
        );
        // A second store on the same directory (a restart) sees it.
        let again = FileStore::open(dir.path()).unwrap();
        assert_eq!(
            again.get("quota.a-2026-11").await.unwrap().as_deref(),
            Some("6")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("quota.a-2026-11"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "state may hold keys: owner only");
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(&dir.path().join("s")).unwrap();
        store.put("../../etc/x", "1".into()).await.unwrap();
        let outer: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outer, ["s"]);
        assert_eq!(fs::read_dir(dir.path().join("s")).unwrap().count(), 1);
        assert_eq!(
            store.get("../../etc/x").await.unwrap().as_deref(),
            Some("1")
        );
    }
}
