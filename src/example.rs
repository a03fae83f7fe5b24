//! The example app, compiled into the binary: `zbot shell` makes its git repository when an app's
//! local `clone_url` has none yet (what `examples/adxstat/make-repo` does), so the shell works from
//! any directory with nothing but the `zbot` binary; and the example `bot.toml` `zbot init` writes.
//!
//! The repository gets two releases of the app, tagged `v0.0.1` and `v0.0.2` (`main` at `v0.0.2`).
//! It is made in a directory beside its place and renamed into place when whole, so an interrupted
//! attempt never leaves a half-made repository that would pass for a made one. git runs with an
//! argv (never a shell), no prompt, a fixed author, and none of the user's or system's git
//! configuration (no commit signing, no hooks), so it behaves the same on every machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The commented configuration `zbot init` writes, and what `zbot shell` uses when there is none.
pub const BOT_TOML: &str = include_str!("../bot.toml");

/// The name of the example app in [`BOT_TOML`].
pub const APP: &str = "adxstat";

/// The example app's files: (path in the repository, content).
const FILES: &[(&str, &str)] = &[
    ("fabfile.py", include_str!("../examples/adxstat/fabfile.py")),
    (
        "app/index.html",
        include_str!("../examples/adxstat/app/index.html"),
    ),
];

/// The releases committed and tagged, in order.
const VERSIONS: &[&str] = &["0.0.1", "0.0.2"];

/// Why the example repository could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("git {args}: {reason}")]
    Git { args: String, reason: String },
}

/// The directory a `file://` clone URL names, if it is one (what `bot.toml`'s local paths become).
pub fn local_path(clone_url: &str) -> Option<PathBuf> {
    clone_url.strip_prefix("file://").map(PathBuf::from)
}

/// Whether `dir` holds a git repository (a working tree or a bare one).
pub fn is_repository(dir: &Path) -> bool {
    dir.join(".git").exists() || (dir.join("HEAD").is_file() && dir.join("objects").is_dir())
}

fn git(dir: &Path, args: &[&str]) -> Result<(), ExampleError> {
    let failed = |reason: String| ExampleError::Git {
        args: args.join(" "),
        reason,
    };
    let output = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "zbot")
        .env("GIT_AUTHOR_EMAIL", "zbot@example.invalid")
        .env("GIT_COMMITTER_NAME", "zbot")
        .env("GIT_COMMITTER_EMAIL", "zbot@example.invalid")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

/// Makes the example app's repository at `dir` (its parent created if missing; `dir` itself must not
/// exist, or be empty): its files, one commit and tag per release, made beside it and renamed into
/// place once whole.
pub fn make_repository(dir: &Path) -> Result<(), ExampleError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| APP.to_string());
    let prefix = format!(".{name}.making-");
    let making = parent.join(format!("{prefix}{}", std::process::id()));
    // What an interrupted attempt of this process id left, and what crashed processes left long ago.
    let _ = std::fs::remove_dir_all(&making);
    for stale in stale_leftovers(parent, &prefix, std::time::SystemTime::now()) {
        let _ = std::fs::remove_dir_all(stale);
    }
    let made = make_in(&making).and_then(|()| {
        std::fs::rename(&making, dir).map_err(|source| ExampleError::Write {
            path: dir.to_path_buf(),
            source,
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&making);
    }
    made
}

/// Writes `contents` to `path` as a new file, never over an existing one (`AlreadyExists`): written
/// whole beside it, then hard-linked into place, so an interruption leaves no half-written file.
/// Where the filesystem has no hard links (vfat, some CIFS and volume drivers: `Unsupported` or
/// `PermissionDenied`), it is created with `create_new` and written in place instead.
pub fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_new_with(path, contents, |from, to| std::fs::hard_link(from, to))
}

fn write_new_with(
    path: &Path,
    contents: &[u8],
    link: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::{ErrorKind, Write};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let partial = path.with_file_name(format!(".{name}.zbot-init-{}", std::process::id()));
    let linked = std::fs::write(&partial, contents).and_then(|()| link(&partial, path));
    let _ = std::fs::remove_file(&partial);
    match linked {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Unsupported | ErrorKind::PermissionDenied
            ) =>
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            file.write_all(contents).inspect_err(|_| {
                let _ = std::fs::remove_file(path);
            })
        }
        other => other,
    }
}

/// How long another process's half-made repository is left alone: making one takes seconds, so
/// one older than this was left by a process that crashed or was killed.
const STALE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The entries of `parent` named `prefix…` last changed more than [`STALE`] before `now`.
fn stale_leftovers(
    parent: &Path,
    prefix: &str,
    now: std::time::SystemTime,
) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|changed| now.duration_since(changed).is_ok_and(|age| age > STALE))
        })
        .map(|e| e.path())
        .collect()
}

/// The repository made in `dir`, which is created.
fn make_in(dir: &Path) -> Result<(), ExampleError> {
    let write = |path: &Path, content: &str| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ExampleError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(path, content).map_err(|source| ExampleError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| ExampleError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    git(dir, &["init", "--quiet", "--initial-branch=main"])?;
    for (path, content) in FILES {
        write(&dir.join(path), content)?;
    }
    for version in VERSIONS {
        write(&dir.join("app/VERSION"), &format!("{version}\n"))?;
        git(dir, &["add", "--all"])?;
        git(
            dir,
            &["commit", "--quiet", "-m", &format!("adxstat {version}")],
        )?;
        git(dir, &["tag", &format!("v{version}")])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_written_with_or_without_hard_links_and_never_over_one() {
        use std::io::{Error, ErrorKind};
        let dir = tempfile::tempdir().unwrap();
        for (name, link_fails) in [
            ("linked.toml", None),
            ("vfat.toml", Some(ErrorKind::Unsupported)),
            ("cifs.toml", Some(ErrorKind::PermissionDenied)),
        ] {
            let path = dir.path().join(name);
            let link = |from: &Path, to: &Path| match link_fails {
                Some(kind) => Err(Error::from(kind)),
                None => std::fs::hard_link(from, to),
            };
            write_new_with(&path, b"one", link).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"one", "{name}");
            let again = write_new_with(&path, b"two", link).unwrap_err();
            assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{name}");
            assert_eq!(std::fs::read(&path).unwrap(), b"one", "{name}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn what_crashed_makers_left_long_ago_is_removed_and_a_running_ones_is_not() {
        let parent = tempfile::tempdir().unwrap();
        let old = parent.path().join(".adxstat.making-4000001");
        let running = parent.path().join(".adxstat.making-4000002");
        let other = parent.path().join(".other.making-4000003");
        for dir in [&old, &running, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for dir in [&old, &other] {
            std::fs::File::open(dir)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        let dir = parent.path().join("adxstat");
        make_repository(&dir).unwrap();
        assert!(dir.join(".git").is_dir());
        assert!(!old.exists(), "left by a crashed process an hour ago");
        assert!(running.exists(), "another process may be making it now");
        assert!(other.exists(), "another repository's");
    }

    #[test]
    fn the_example_repository_has_both_releases() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("example/adxstat");
        assert!(!is_repository(&repo));
        make_repository(&repo).unwrap();
        assert!(is_repository(&repo));
        let tags = Command::new("git")
            .current_dir(&repo)
            .args(["tag", "--list"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&tags.stdout), "v0.0.1\nv0.0.2\n");
        assert_eq!(
            std::fs::read_to_string(repo.join("app/VERSION")).unwrap(),
            "0.0.2\n"
        );
    }

    /// A failed attempt leaves nothing at the repository's place (nor beside it), so the next one
    /// makes it whole; one that succeeds leaves no work directory behind.
    #[test]
    fn the_repository_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("adxstat");
        // Its place holds a file: the rename fails after the repository was made beside it.
        std::fs::write(&repo, "in the way").unwrap();
        assert!(make_repository(&repo).is_err());
        assert!(!is_repository(&repo));
        std::fs::remove_file(&repo).unwrap();
        make_repository(&repo).unwrap();
        assert!(is_repository(&repo));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["adxstat"], "nothing beside it");
    }

    #[test]
    fn only_file_urls_are_local_paths() {
        assert_eq!(local_path("file:///srv/a"), Some(PathBuf::from("/srv/a")));
        assert_eq!(local_path("git@github.com:o/r.git"), None);
        assert_eq!(local_path("https://github.com/o/r"), None);
    }
}
