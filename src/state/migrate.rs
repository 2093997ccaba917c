//! Moving state from the identities of countersign 0.1 to those of 0.2.
//!
//! 0.1 kept a credential's state under an identity that left out the
//! upstream and mapped every character outside `[A-Za-z0-9]` to `_`
//! (`tts-www_example_com-1a2b3c4d5e6f`): two routes for one member at two
//! upstreams shared a session, and `a.b` and `a_b` were one identity. 0.2
//! identities hash every part and the upstream (`vocab::credential_at`).
//!
//! At start, each configured route *claims* the 0.1 identity it would have
//! had. An old identity claimed by routes that agree on one new identity
//! is moved there: last login times (`login.<id>`), rotated keys
//! (`keys.<id>.<name>`) and quota counters (`quota.<id>.<YYYY-MM>`). One
//! claimed for two different new identities (two upstreams, or `a.b` and
//! `a_b`) is left where it is, with an error naming the routes, since
//! countersign cannot tell whose it is.
//!
//! A quota counter is never lost: when both names hold a count (a rollback
//! to 0.1 ran in between), the counts are added. A rotated key at both
//! names is left alone and logged (either may be the current one).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::file::{write_atomically, FileStore};
use super::RedisState;

/// Which state an identity names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// A credential's login time and rotated keys.
    Credential,
    /// A quota's monthly counters.
    Quota,
}

impl Space {
    /// The state key prefixes (`<prefix><id>` or `<prefix><id>.<rest>`).
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Space::Credential => &["login.", "keys."],
            Space::Quota => &["quota."],
        }
    }
}

/// A route's claim: its state was under `old`, and belongs under `new`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub route: String,
    pub space: Space,
    pub old: String,
    pub new: String,
    /// The rotatable keys it holds (`keys.<id>.<name>`), for Redis, which
    /// is not listed.
    pub key_names: Vec<&'static str>,
}

/// An old identity moved to one new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub space: Space,
    pub old: String,
    pub new: String,
    pub key_names: Vec<&'static str>,
}

/// Claims grouped by old identity: the renames, and the old identities
/// claimed for several new ones (with the routes that claim them).
pub fn resolve(claims: &[Claim]) -> (Vec<Rename>, Vec<(String, Vec<String>)>) {
    let mut by_old: BTreeMap<(Space, &str), Vec<&Claim>> = BTreeMap::new();
    for c in claims.iter().filter(|c| c.old != c.new) {
        by_old.entry((c.space, c.old.as_str())).or_default().push(c);
    }
    let mut renames = Vec::new();
    let mut ambiguous = Vec::new();
    for ((space, old), cs) in by_old {
        let new = &cs[0].new;
        if cs.iter().all(|c| &c.new == new) {
            let mut key_names: Vec<&'static str> = cs
                .iter()
                .flat_map(|c| c.key_names.iter().copied())
                .collect();
            key_names.sort_unstable();
            key_names.dedup();
            renames.push(Rename {
                space,
                old: old.to_string(),
                new: new.clone(),
                key_names,
            });
        } else {
            let mut routes: Vec<String> = cs.iter().map(|c| c.route.clone()).collect();
            routes.sort();
            routes.dedup();
            ambiguous.push((old.to_string(), routes));
        }
    }
    (renames, ambiguous)
}

/// How a moved value meets one already at its new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// A counter: the sum (no count is lost).
    Add,
    /// A time: the later one.
    Later,
    /// Anything else (a rotated key): moved only when the name is free.
    IfFree,
}

/// What moving one Redis key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// There was nothing under the old name.
    Nothing,
    Moved,
    /// A value (not a counter) is under both names: both left.
    Conflict,
}

/// What a migration did, for its log lines and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `old name -> new name`.
    pub moved: Vec<(String, String)>,
    /// Names left in place, and why.
    pub left: Vec<(String, String)>,
    /// Some were left because the store failed (not for a conflict): a
    /// later try may move them.
    pub retry: bool,
}

impl Report {
    /// One line for a store that failed: tried again, so not every key.
    fn log_retry(&self, store: &str, pending: usize, error: &str) {
        if self.retry {
            tracing::error!(store, pending, error, "STATE NOT MIGRATED YET: the store failed; trying again every 2 s (a count made meanwhile is added to, not lost)");
        }
    }
}

impl Report {
    fn log(&self, store: &str) {
        for (old, new) in &self.moved {
            tracing::warn!(store, from = %old, to = %new, "state moved to its 0.2 identity (includes the upstream)");
        }
        for (name, why) in &self.left {
            tracing::error!(store, state = %name, "STATE NOT MIGRATED: {why}");
        }
    }
}

fn log_ambiguous(ambiguous: &[(String, Vec<String>)]) -> Vec<(String, String)> {
    ambiguous
        .iter()
        .map(|(old, routes)| {
            let why = format!(
                "routes {} all had the 0.1 identity {old}, but are now different credentials (another upstream, or names 0.1 could not tell apart); countersign cannot tell whose state it is, so it is left in place: move it by hand to the route it belongs to, or remove it",
                routes.join(", ")
            );
            (old.clone(), why)
        })
        .collect()
}

/// Moves the files of every unambiguous rename in `store`'s directory.
/// Runs before the gateway serves; errors are logged and leave the file.
pub fn files(store: &FileStore, claims: &[Claim]) -> Report {
    let (renames, ambiguous) = resolve(claims);
    let mut report = Report {
        left: log_ambiguous(&ambiguous),
        ..Report::default()
    };
    if renames.is_empty() {
        report.log("file");
        return report;
    }
    let dir = store.dir();
    let names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "STATE NOT MIGRATED: cannot list the state dir");
            return report;
        }
    };
    for name in names {
        let Some((prefix, rename, rest)) = match_rename(&name, &renames) else {
            continue;
        };
        let target = format!("{prefix}{}{rest}", rename.new);
        match move_file(dir, &name, &target, prefix) {
            Ok(()) => report.moved.push((name, target)),
            Err(why) => report.left.push((name, why)),
        }
    }
    report.log("file");
    report
}

/// The rename whose old identity `name` is stored under: `(prefix, rename,
/// rest)` for `<prefix><old><rest>`, `rest` empty or starting with `.`.
fn match_rename<'a>(
    name: &'a str,
    renames: &'a [Rename],
) -> Option<(&'static str, &'a Rename, &'a str)> {
    renames.iter().find_map(|r| {
        r.space.prefixes().iter().find_map(|prefix| {
            let rest = name.strip_prefix(prefix)?.strip_prefix(r.old.as_str())?;
            (rest.is_empty() || rest.starts_with('.')).then_some((*prefix, r, rest))
        })
    })
}

/// Moves `dir/from` to `dir/to`, never over an existing file: a quota
/// count is added to the one there, a later login time wins, a rotated key
/// at both names is left for the operator.
fn move_file(dir: &Path, from: &str, to: &str, prefix: &str) -> Result<(), String> {
    let src = dir.join(from);
    let dst = dir.join(to);
    let meta = fs::symlink_metadata(&src).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file (a symbolic link?): refused".into());
    }
    // hard_link never replaces: it fails when `to` exists.
    match fs::hard_link(&src, &dst) {
        Ok(()) => {
            fs::remove_file(&src).map_err(|e| e.to_string())?;
            return sync(dir);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.to_string()),
    }
    if same_file(&src, &dst) {
        // A move interrupted between link and unlink.
        fs::remove_file(&src).map_err(|e| e.to_string())?;
        return sync(dir);
    }
    let read = |p: &Path| -> Result<String, String> {
        let m = fs::symlink_metadata(p).map_err(|e| e.to_string())?;
        if !m.file_type().is_file() {
            return Err(format!("{} is not a regular file: refused", p.display()));
        }
        fs::read_to_string(p).map_err(|e| e.to_string())
    };
    let number = |p: &Path| -> Result<u64, String> {
        read(p)?
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{} does not hold a number", p.display()))
    };
    let merged = match prefix {
        "quota." => number(&src)?.saturating_add(number(&dst)?),
        "login." => number(&src)?.max(number(&dst)?),
        _ => {
            return Err(format!(
                "{to} exists too; either may be the key in use: keep the one the upstream accepts and remove the other"
            ))
        }
    };
    write_atomically(dir, &dst, merged.to_string().as_bytes()).map_err(|e| e.to_string())?;
    fs::remove_file(&src).map_err(|e| e.to_string())?;
    sync(dir)
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

fn sync(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| e.to_string())
}

/// The 0.1 Redis key of `what` for `id` (before identities and hash tags).
fn legacy_key(st: &RedisState, what: &str, id: &str) -> String {
    format!("{}:{what}:{id}", st.prefix())
}

/// Moves the Redis keys of every unambiguous rename: quota counters of
/// this month and the last (older ones have expired), login times and
/// rotated keys. Other keys (sessions, leases, rate slots) are short-lived
/// and simply start afresh. Runs before the gateway serves.
pub async fn redis(st: &RedisState, claims: &[Claim], now: time::OffsetDateTime) -> Report {
    let (renames, ambiguous) = resolve(claims);
    let mut report = Report {
        left: log_ambiguous(&ambiguous),
        ..Report::default()
    };
    let months = {
        let this = now.date().replace_day(1).unwrap_or(now.date());
        let last = this.previous_day().unwrap_or(this);
        [this, last].map(|d| format!("{:04}-{:02}", d.year(), u8::from(d.month())))
    };
    let (mut pending, mut last_error) = (0, String::new());
    for r in &renames {
        let mut moves: Vec<(String, String, Merge)> = Vec::new();
        match r.space {
            Space::Quota => {
                for m in &months {
                    moves.push((
                        format!("{}:{m}", legacy_key(st, "quota", &r.old)),
                        format!("{}:{m}", st.key("quota", &r.new)),
                        Merge::Add,
                    ));
                }
            }
            Space::Credential => {
                let kv = |name: &str| (format!("login.{name}"), Merge::Later);
                let mut names = vec![kv(&r.old)];
                let mut new_names = vec![kv(&r.new)];
                for k in &r.key_names {
                    names.push((format!("keys.{}.{k}", r.old), Merge::IfFree));
                    new_names.push((format!("keys.{}.{k}", r.new), Merge::IfFree));
                }
                for ((old, merge), (new, _)) in names.into_iter().zip(new_names) {
                    moves.push((legacy_key(st, "kv", &old), st.key("kv", &new), merge));
                }
            }
        }
        for (from, to, merge) in moves {
            match st.adopt(&from, &to, merge).await {
                Ok(Adopted::Nothing) => {}
                Ok(Adopted::Moved) => report.moved.push((from, to)),
                Ok(Adopted::Conflict) => report.left.push((
                    from,
                    format!("{to} exists too; either may be the key in use: keep the one the upstream accepts and delete the other"),
                )),
                Err(e) => {
                    report.retry = true;
                    pending += 1;
                    last_error = e.to_string();
                }
            }
        }
    }
    report.log("redis");
    report.log_retry("redis", pending, &last_error);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(route: &str, space: Space, old: &str, new: &str) -> Claim {
        Claim {
            route: route.into(),
            space,
            old: old.into(),
            new: new.into(),
            key_names: vec!["access_key"],
        }
    }

    #[test]
    fn an_old_identity_moves_only_when_its_routes_agree() {
        let claims = [
            claim("a", Space::Credential, "tts-x-1", "tts-new1"),
            claim("b", Space::Credential, "tts-x-1", "tts-new1"),
            claim("c", Space::Credential, "tts-y-2", "tts-new2"),
            claim("d", Space::Credential, "tts-y-2", "tts-new3"),
            claim("e", Space::Quota, "tts-x-1", "tts-q"),
        ];
        let (renames, ambiguous) = resolve(&claims);
        let olds: Vec<_> = renames
            .iter()
            .map(|r| (r.space, r.old.as_str(), r.new.as_str()))
            .collect();
        assert_eq!(
            olds,
            [
                (Space::Credential, "tts-x-1", "tts-new1"),
                (Space::Quota, "tts-x-1", "tts-q")
            ]
        );
        assert_eq!(
            ambiguous,
            [(
                "tts-y-2".to_string(),
                vec!["c".to_string(), "d".to_string()]
            )]
        );
    }

    #[test]
    fn names_match_whole_identities_only() {
        let renames = resolve(&[claim("a", Space::Quota, "xrtc-AC1", "xrtc-n")]).0;
        assert!(match_rename("quota.xrtc-AC1.2026-01", &renames).is_some());
        assert!(match_rename("quota.xrtc-AC1", &renames).is_some());
        assert!(match_rename("quota.xrtc-AC12.2026-01", &renames).is_none());
        assert!(match_rename("quota.xrtc-AC1-abc.2026-01", &renames).is_none());
        assert!(match_rename("login.xrtc-AC1", &renames).is_none());
    }

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn read(dir: &Path, name: &str) -> Option<String> {
        fs::read_to_string(dir.join(name)).ok()
    }

    #[test]
    fn files_move_and_counts_add_up() {
        let (dir, store) = store();
        let d = dir.path();
        fs::write(d.join("quota.xrtc-AC1.2026-01"), "700").unwrap();
        fs::write(d.join("quota.xrtc-AC1.2025-12"), "5").unwrap();
        // A rollback to 0.1 counted under the old name after a first move.
        fs::write(d.join("quota.xrtc-n.2026-01"), "50").unwrap();
        fs::write(d.join("login.tts-x-1"), "1000").unwrap();
        fs::write(d.join("login.tts-n"), "900").unwrap();
        fs::write(d.join("keys.tts-x-1.access_key"), "{}").unwrap();
        fs::write(d.join("keys.tts-x-1.secret"), "{\"a\":1}").unwrap();
        fs::write(d.join("keys.tts-n.secret"), "{\"b\":2}").unwrap();
        fs::write(d.join("login.tts-y-2"), "1").unwrap();
        let claims = [
            claim("x", Space::Quota, "xrtc-AC1", "xrtc-n"),
            claim("t", Space::Credential, "tts-x-1", "tts-n"),
            claim("c", Space::Credential, "tts-y-2", "tts-2"),
            claim("d", Space::Credential, "tts-y-2", "tts-3"),
        ];
        let report = files(&store, &claims);
        assert_eq!(read(d, "quota.xrtc-n.2026-01").as_deref(), Some("750"));
        assert_eq!(read(d, "quota.xrtc-n.2025-12").as_deref(), Some("5"));
        assert_eq!(read(d, "quota.xrtc-AC1.2026-01"), None);
        assert_eq!(read(d, "login.tts-n").as_deref(), Some("1000"));
        assert_eq!(read(d, "keys.tts-n.access_key").as_deref(), Some("{}"));
        // Both names hold a key: neither is touched.
        assert_eq!(read(d, "keys.tts-x-1.secret").as_deref(), Some("{\"a\":1}"));
        assert_eq!(read(d, "keys.tts-n.secret").as_deref(), Some("{\"b\":2}"));
        // Claimed by two new identities: left.
        assert_eq!(read(d, "login.tts-y-2").as_deref(), Some("1"));
        let left: Vec<&str> = report.left.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(left.len(), 2, "{report:?}");
        assert!(left.contains(&"keys.tts-x-1.secret") && left.contains(&"tts-y-2"));
        assert_eq!(report.moved.len(), 4, "{report:?}");
        // A second start has nothing left to do.
        let again = files(&store, &claims[..2]);
        assert_eq!(again.moved, vec![]);
        assert_eq!(read(d, "quota.xrtc-n.2026-01").as_deref(), Some("750"));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_in_place_of_an_old_file_is_not_moved() {
        let (dir, store) = store();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), "99").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("quota.xrtc-AC1.2026-01"))
            .unwrap();
        let report = files(&store, &[claim("x", Space::Quota, "xrtc-AC1", "xrtc-n")]);
        assert_eq!(report.moved, vec![]);
        assert_eq!(read(dir.path(), "quota.xrtc-n.2026-01"), None);
    }
}
