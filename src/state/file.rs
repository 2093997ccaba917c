//! The embedded state store: one small file per key in `state_dir`, replaced
//! atomically (write to a temporary file, fsync, rename, fsync the directory),
//! so a crash leaves either the old value or the new one, never half of each.
//!
//! The directory is countersign's alone: created 0700, and refused when
//! another user owns it or when its group or other users may write to it
//! (they could plant a symbolic link where countersign writes, or swap a
//! quota counter). Temporary files get unpredictable names and are created
//! with `O_CREAT | O_EXCL | O_NOFOLLOW`; a symbolic link in place of a state
//! file is refused, on read and on write.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{StateError, StateStore};

pub struct FileStore {
    dir: Arc<PathBuf>,
}

/// Why the state directory cannot be used (checked before anything is written).
#[derive(Debug, PartialEq, Eq)]
enum Unsafe {
    NotADirectory,
    OwnedByOther { owner: u32, me: u32 },
    WritableByOthers { mode: u32 },
}

impl FileStore {
    /// Opens (creating it 0700 if needed) the directory, checks that it is
    /// this user's alone, and that it is writable.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let shown = dir.display();
        create_private_dir(dir)
            .map_err(|e| StateError::caused(format!("state_dir {shown} cannot be created"), e))?;
        let meta = fs::metadata(dir)
            .map_err(|e| StateError::caused(format!("state_dir {shown} cannot be read"), e))?;
        if let Err(why) = check_private(&meta) {
            return Err(StateError::new(refusal(dir, &why)));
        }
        let probe = dir.join(format!(".countersign-write-test-{}", random_suffix()));
        create_new(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| StateError::caused(format!("state_dir {shown} is not writable"), e))?;
        Ok(FileStore {
            dir: Arc::new(dir.to_path_buf()),
        })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path_of(dir: &Path, key: &str) -> PathBuf {
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

/// `mkdir -p` with mode 0700 for every directory it creates.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(unix)]
fn check_private(meta: &fs::Metadata) -> Result<(), Unsafe> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_dir() {
        return Err(Unsafe::NotADirectory);
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Unsafe::OwnedByOther {
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Unsafe::WritableByOthers {
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(meta: &fs::Metadata) -> Result<(), Unsafe> {
    if meta.is_dir() {
        Ok(())
    } else {
        Err(Unsafe::NotADirectory)
    }
}

/// The refusal, naming the directory and the fix.
fn refusal(dir: &Path, why: &Unsafe) -> String {
    let d = dir.display();
    match why {
        Unsafe::NotADirectory => format!("state_dir {d} is not a directory"),
        Unsafe::OwnedByOther { owner, me } => format!(
            "state_dir {d} is owned by uid {owner}, not by the user countersign runs as (uid {me}): \
             that user could replace countersign's state files (quota counters, rotated keys); \
             fix: chown {me} {d} && chmod 700 {d}, or point server.state_dir at a directory of this user"
        ),
        Unsafe::WritableByOthers { mode } => format!(
            "state_dir {d} is writable by its group or other users (mode {mode:o}): they could plant \
             or swap countersign's state files (quota counters, rotated keys); fix: chmod 700 {d}, \
             or point server.state_dir at a subdirectory countersign creates itself"
        ),
    }
}

/// 64 random bits in hex: a temporary name nobody can guess in advance.
fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Opening flags that refuse a symbolic link as the last path component.
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    options
}

/// A new file, owner-only: fails if anything (a file, a link) has the name.
fn create_new(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    // Values include rotated upstream keys: readable by this user only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    no_follow(options.write(true).create_new(true)).open(path)
}

fn symlink_refused(path: &Path) -> std::io::Error {
    std::io::Error::other(format!(
        "{} is a symbolic link, not a state file: refused (remove it; countersign writes its own)",
        path.display()
    ))
}

/// Reads a state file; `None` when absent. A symbolic link or anything but
/// a regular file is refused rather than followed.
fn read_file(path: &Path) -> std::io::Result<Option<zeroize::Zeroizing<String>>> {
    let mut f = match no_follow(OpenOptions::new().read(true)).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if is_symlink(path) => {
            return Err(std::io::Error::new(e.kind(), symlink_refused(path)))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file: refused",
            path.display()
        )));
    }
    // Values may be rotated keys: one buffer, sized once, zeroed when dropped.
    let len = meta.len() as usize;
    let mut text = zeroize::Zeroizing::new(String::with_capacity(len + 1));
    f.read_to_string(&mut text)?;
    Ok(Some(text))
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

pub(super) fn write_atomically(dir: &Path, path: &Path, value: &[u8]) -> std::io::Result<()> {
    if is_symlink(path) {
        return Err(symlink_refused(path));
    }
    let tmp = dir.join(format!(".tmp-{}", random_suffix()));
    let written = (|| {
        let mut f = create_new(&tmp)?;
        f.write_all(value)?;
        f.sync_all()?;
        drop(f);
        // rename replaces a name, never writes through a link at `path`.
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()
}

impl StateStore for FileStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        let path = Self::path_of(&self.dir, key);
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || read_file(&path))
                .await
                .map_err(|e| StateError::caused("the state store's reader stopped", e))?;
            match read {
                // Moved out, not copied: the emptied buffer is what is zeroed.
                Ok(v) => Ok(v.map(|mut text| std::mem::take(&mut *text))),
                Err(e) => Err(StateError::caused(format!("reading {key}"), e)),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<(), StateError>> {
        let dir = Arc::clone(&self.dir);
        let path = Self::path_of(&dir, key);
        Box::pin(async move {
            let value = zeroize::Zeroizing::new(value);
            tokio::task::spawn_blocking(move || write_atomically(&dir, &path, value.as_bytes()))
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

    #[cfg(unix)]
    fn mode_of(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_state_dir_is_created_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        FileStore::open(&state).unwrap();
        assert_eq!(mode_of(&state), 0o700);
        assert_eq!(mode_of(&dir.path().join("a")), 0o700);
    }

    #[cfg(unix)]
    #[test]
    fn a_state_dir_others_can_write_to_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o770, 0o777, 0o1777, 0o702] {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            let e = FileStore::open(dir.path()).err().unwrap().to_string();
            assert!(e.contains(&dir.path().display().to_string()), "{e}");
            assert!(e.contains("writable by its group or other users"), "{e}");
            assert!(e.contains("chmod 700"), "{e}");
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                0,
                "nothing written"
            );
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
        FileStore::open(dir.path()).unwrap();
    }

    /// Needs root to give the directory away; elsewhere the check is the
    /// same comparison, covered by `check_private`'s unit below.
    #[cfg(unix)]
    #[test]
    fn a_state_dir_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        if me == 0 {
            std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
            let e = FileStore::open(dir.path()).err().unwrap().to_string();
            assert!(e.contains("is owned by uid 65534"), "{e}");
            assert!(e.contains(&format!("chown {me}")), "{e}");
        }
        let meta = fs::metadata("/").unwrap();
        let root_owned = std::os::unix::fs::MetadataExt::uid(&meta) == 0;
        if me != 0 && root_owned {
            assert_eq!(
                check_private(&meta),
                Err(Unsafe::OwnedByOther { owner: 0, me })
            );
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_in_place_of_a_state_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let state = dir.path().join("state");
        let store = FileStore::open(&state).unwrap();
        std::os::unix::fs::symlink(&victim, state.join("quota.acct.2026-01")).unwrap();
        let read = store.get("quota.acct.2026-01").await;
        assert!(
            read.as_ref()
                .is_err_and(|e| e.to_string().contains("symbolic link")),
            "{:?}",
            read.map_err(|e| e.to_string())
        );
        let write = store.put("quota.acct.2026-01", "1".into()).await;
        assert!(write.is_err_and(|e| e.to_string().contains("symbolic link")));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(fs::symlink_metadata(state.join("quota.acct.2026-01"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    /// The temporary names were `.tmp-<pid>-<n>`: a link planted there made
    /// the write go wherever it pointed.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_planted_at_a_temporary_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let state = dir.path().join("state");
        let store = FileStore::open(&state).unwrap();
        for n in 0..4 {
            let planted = state.join(format!(".tmp-{}-{n}", std::process::id()));
            std::os::unix::fs::symlink(&victim, planted).unwrap();
        }
        for i in 0..4 {
            store.put("login.x", i.to_string()).await.unwrap();
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_to_string(state.join("login.x")).unwrap(), "3");
        let temps = fs::read_dir(&state)
            .unwrap()
            .filter(|e| {
                let e = e.as_ref().unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(".tmp-") && !e.file_type().unwrap().is_symlink()
            })
            .count();
        assert_eq!(temps, 0, "no temporary file is left behind");
    }
}
