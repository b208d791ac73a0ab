//! Keys on disk, for the binaries: a secret key file per identity, and files
//! of keys remembered by name (pinned server keys, known peers).
//!
//! The sans-IO core takes keys as bytes; this module is the I/O beside it.
//!
//! * **Where**: [`config_dir`] is `$XDG_CONFIG_HOME/udpchat`, else
//!   `~/.config/udpchat`; [`state_dir`] is `$XDG_STATE_HOME/udpchat`, else
//!   `~/.local/state/udpchat`. Directories are made mode 0700.
//! * **Secret files** hold one 32-byte key as 64 hex digits on a line of its
//!   own, after comment lines starting with `#`. They are created mode 0600
//!   and never replaced: a new key is written to a temporary file in the same
//!   directory, synced, then hard-linked to its name, which fails if another
//!   process got there first. The loser reads the winner's key, so two
//!   clients of one user starting at once end up with the same key, and
//!   nobody ever reads a half-written file. A secret file that others may
//!   read is refused, as ssh refuses such keys.
//! * **Known-key files** hold `NAME HEX` lines (NAME has no spaces; comments
//!   start with `#`). A change re-reads the file under an exclusive lock on
//!   a lock file beside it, then writes a temporary file and renames it over
//!   the old one, so two processes adding keys at once both keep theirs.
//!
//! Every malformed file is a clear [`io::Error`] naming the file and the line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// `$XDG_CONFIG_HOME/udpchat`, else `$HOME/.config/udpchat`.
pub fn config_dir() -> io::Result<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config")
}

/// `$XDG_STATE_HOME/udpchat`, else `$HOME/.local/state/udpchat`.
pub fn state_dir() -> io::Result<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state")
}

fn xdg_dir(var: &str, fallback: &str) -> io::Result<PathBuf> {
    // The XDG spec says relative values are to be ignored.
    let base = match std::env::var_os(var).map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => match std::env::var_os("HOME").map(PathBuf::from) {
            Some(home) if home.is_absolute() => home.join(fallback),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("neither {var} nor HOME is set to an absolute path"),
                ));
            }
        },
    };
    Ok(base.join("udpchat"))
}

/// Makes `dir` and its parents, the last one mode 0700.
fn make_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| with_path(e, dir, "cannot create directory"))
}

fn with_path(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn invalid(path: &Path, line: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}:{line}: {what}", path.display()),
    )
}

/// Parses 64 hex digits.
pub fn parse_key(hex: &str) -> Option<[u8; KEY_LEN]> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(key)
}

/// 64 lowercase hex digits.
pub fn format_key(key: &[u8; KEY_LEN]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary file beside `path`, unique to this process and call.
fn temp_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `contents` to a new temporary file beside `path`, mode 0600,
/// synced; returns its path.
fn write_temp(path: &Path, contents: &str) -> io::Result<PathBuf> {
    let temp = temp_beside(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| with_path(e, &temp, "cannot create"))?;
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(with_path(e, &temp, "cannot write"));
    }
    Ok(temp)
}

/// Reads the secret key in `path`.
pub fn read_secret(path: &Path) -> io::Result<[u8; KEY_LEN]> {
    let file = File::open(path).map_err(|e| with_path(e, path, "cannot read"))?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} may be read by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    let mut key = None;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| with_path(e, path, "cannot read"))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if key.is_some() {
            return Err(invalid(path, i + 1, "more than one key"));
        }
        key =
            Some(parse_key(line).ok_or_else(|| invalid(path, i + 1, "not a key (64 hex digits)"))?);
    }
    key.ok_or_else(|| invalid(path, 1, "no key in the file"))
}

/// Whether [`load_or_create_secret`] made the key or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The file was there.
    Loaded,
    /// This call wrote it.
    Created,
}

/// The secret key in `path`; if there is no such file, one is made with the
/// key `make` returns (and `comment` on the line above it). See the module
/// docs for why two processes doing this at once agree on one key.
pub fn load_or_create_secret(
    path: &Path,
    comment: &str,
    make: impl FnOnce() -> [u8; KEY_LEN],
) -> io::Result<([u8; KEY_LEN], Origin)> {
    match read_secret(path) {
        Ok(key) => return Ok((key, Origin::Loaded)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        make_dir(dir)?;
    }
    let key = make();
    let comment: String = comment.lines().map(|l| format!("# {l}\n")).collect();
    let temp = write_temp(path, &format!("{comment}{}\n", format_key(&key)))?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok((key, Origin::Created)),
        // Someone else made it first: theirs is the key.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok((read_secret(path)?, Origin::Loaded))
        }
        Err(e) => Err(with_path(e, path, "cannot create")),
    }
}

/// Replaces the file at `path` with `contents`, atomically: a reader sees the
/// old file or the new one, never a mix, and a crash leaves one of the two.
/// Mode 0600; the directory is made if missing.
pub fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        make_dir(dir)?;
    }
    let temp = write_temp(path, contents)?;
    let renamed = fs::rename(&temp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed.map_err(|e| with_path(e, path, "cannot replace"))
}

/// A file of keys remembered by name (see the module docs).
#[derive(Debug, Clone)]
pub struct KnownKeys {
    path: PathBuf,
}

impl KnownKeys {
    /// The file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownKeys { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every `(name, key)` in the file, in file order; empty if there is no
    /// file.
    pub fn read(&self) -> io::Result<Vec<(String, [u8; KEY_LEN])>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(with_path(e, &self.path, "cannot read")),
        };
        let mut entries = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| with_path(e, &self.path, "cannot read"))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(hex), None) = (words.next(), words.next(), words.next()) else {
                return Err(invalid(&self.path, i + 1, "expected NAME KEY"));
            };
            let key = parse_key(hex)
                .ok_or_else(|| invalid(&self.path, i + 1, "not a key (64 hex digits)"))?;
            entries.push((name.to_string(), key));
        }
        Ok(entries)
    }

    /// The key remembered for `name`.
    pub fn get(&self, name: &str) -> io::Result<Option<[u8; KEY_LEN]>> {
        Ok(self
            .read()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, key)| key))
    }

    /// Remembers `key` for `name`, replacing what was there; other entries,
    /// including ones another process added a moment ago, are kept.
    pub fn set(&self, name: &str, key: &[u8; KEY_LEN]) -> io::Result<()> {
        if name.is_empty() || name.chars().any(char::is_whitespace) || name.starts_with('#') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} cannot be a name in {}", self.path.display()),
            ));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            make_dir(dir)?;
        }
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| with_path(e, &lock_path, "cannot open"))?;
        lock.lock()
            .map_err(|e| with_path(e, &lock_path, "cannot lock"))?;
        let mut entries = self.read()?;
        match entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = *key,
            None => entries.push((name.to_string(), *key)),
        }
        let mut contents = String::from("# udpchat: keys remembered by name (NAME KEY)\n");
        for (n, k) in &entries {
            contents.push_str(&format!("{n} {}\n", format_key(k)));
        }
        write_atomic(&self.path, &contents)
        // The lock is released when `lock` is dropped.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "udpchat-keystore-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_secret_is_created_once_mode_0600_and_then_loaded() {
        let dir = scratch("secret");
        let path = dir.join("sub/identity.key");
        let (key, origin) = load_or_create_secret(&path, "Alice's key", || [7; KEY_LEN]).unwrap();
        assert_eq!((key, origin), ([7; KEY_LEN], Origin::Created));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let (again, origin) = load_or_create_secret(&path, "x", || [9; KEY_LEN]).unwrap();
        assert_eq!((again, origin), ([7; KEY_LEN], Origin::Loaded));
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("# Alice's key\n")
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn racing_creators_agree_on_one_key() {
        let dir = scratch("race");
        let path = dir.join("identity.key");
        let keys: Vec<[u8; KEY_LEN]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || load_or_create_secret(path, "k", || [i; KEY_LEN]).unwrap().0)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        assert_eq!(read_secret(&path).unwrap(), keys[0]);
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files were left behind");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_secret_files_are_clear_errors() {
        let dir = scratch("bad");
        make_dir(&dir).unwrap();
        let cases: [(&str, &str); 4] = [
            ("", "no key"),
            ("# only a comment\n", "no key"),
            ("zz\n", "not a key"),
            (
                &format!("{}\n{}\n", "ab".repeat(32), "cd".repeat(32)),
                "more than one",
            ),
        ];
        for (i, (contents, expected)) in cases.iter().enumerate() {
            let path = dir.join(format!("k{i}"));
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = read_secret(&path).unwrap_err().to_string();
            assert!(err.contains(expected), "{contents:?}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        let open = dir.join("open");
        fs::write(&open, format!("{}\n", "ab".repeat(32))).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&open).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn known_keys_keep_every_writer_s_entry() {
        let dir = scratch("known");
        let known = KnownKeys::new(dir.join("known_peers"));
        assert_eq!(known.get("bob").unwrap(), None);
        std::thread::scope(|s| {
            for i in 0..16u8 {
                let known = known.clone();
                s.spawn(move || known.set(&format!("user{i}"), &[i; KEY_LEN]).unwrap());
            }
        });
        let entries = known.read().unwrap();
        assert_eq!(entries.len(), 16);
        known.set("user3", &[99; KEY_LEN]).unwrap();
        assert_eq!(known.get("user3").unwrap(), Some([99; KEY_LEN]));
        assert_eq!(known.read().unwrap().len(), 16);
        assert!(known.set("two words", &[1; KEY_LEN]).is_err());
        fs::write(known.path(), "bob nothex\n").unwrap();
        let err = known.read().unwrap_err().to_string();
        assert!(err.contains(":1: not a key"), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn keys_round_trip_as_hex() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(parse_key(&format_key(&key)), Some(key));
        assert_eq!(parse_key(&format_key(&key).to_uppercase()), Some(key));
        assert_eq!(parse_key("ab"), None);
        assert_eq!(parse_key(&"g".repeat(64)), None);
        assert_eq!(parse_key(&"é".repeat(32)), None);
    }

    #[test]
    fn xdg_dirs_follow_the_spec() {
        // Read only: the environment is the process's, shared by tests.
        if let Ok(dir) = config_dir() {
            assert!(dir.is_absolute() && dir.ends_with("udpchat"));
        }
        if let Ok(dir) = state_dir() {
            assert!(dir.is_absolute() && dir.ends_with("udpchat"));
        }
    }
}
