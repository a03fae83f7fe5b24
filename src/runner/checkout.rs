//! Working trees for deploys: one bare cache per repository, one reused working tree per app and
//! environment.
//!
//! The cache holds branches and tags only (not `refs/pull/*`, which make fetches of large repositories
//! slow) and is fetched only when the wanted sha is missing. The tree is moved to the new sha with
//! `checkout --force` and `clean -ffdx`, which rewrites only the files that changed; a tree that is
//! missing, broken or not a worktree of the cache is rebuilt. Since only one deploy per app and
//! environment runs at a time, a tree is never shared by two runs.
//!
//! Credentials never reach a URL, a file or an argv: a token goes to git as an `http.extraHeader` in
//! the environment (`GIT_CONFIG_*`), a deploy key through `GIT_SSH_COMMAND` with zbot's own
//! known_hosts file (new hosts are learnt once, changed keys are refused).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::domain::{AppName, Environment, Repository, Sha};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("git {action} failed: {detail}")]
    Git { action: String, detail: String },
    #[error("commit {sha} is not in {repository}")]
    MissingCommit { sha: Sha, repository: Repository },
    /// The working tree's path would leave the work directory (a second line of defence: the names it is
    /// built from cannot hold `/` or `..`).
    #[error("refusing to use {path}: it is not inside the work directory {work_dir}")]
    OutsideWorkDir { path: String, work_dir: String },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// How git authenticates to the repository's host.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    /// For https clone URLs.
    pub token: Option<Secret>,
    /// An SSH private key for ssh clone URLs.
    pub deploy_key: Option<PathBuf>,
}

/// The caches and trees of one zbot.
#[derive(Debug, Clone)]
pub struct Checkouts {
    repos_dir: PathBuf,
    work_dir: PathBuf,
    known_hosts: PathBuf,
    /// One change to a repository's cache at a time: two environments of one app may deploy at once.
    cache_locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl Checkouts {
    pub fn new(data_dir: &Path, work_dir: &Path) -> Checkouts {
        Checkouts {
            repos_dir: data_dir.join("repos"),
            work_dir: work_dir.to_path_buf(),
            known_hosts: data_dir.join("known_hosts"),
            cache_locks: Arc::default(),
        }
    }

    /// A tree of `repository` at `sha` for `app` in `environment`, fetching from `clone_url` if needed.
    /// Returns the tree's path and a line for the log saying what was done.
    pub async fn prepare(
        &self,
        repository: &Repository,
        clone_url: &str,
        sha: &Sha,
        app: &AppName,
        environment: &Environment,
        auth: &GitAuth,
    ) -> Result<(PathBuf, String), CheckoutError> {
        let tree = self.tree_path(app, environment)?;
        if !clone_url_is_safe(clone_url) {
            return Err(CheckoutError::Git {
                action: "fetch".into(),
                detail: format!(
                    "`{clone_url}` is not a clone URL zbot accepts (https, ssh, git or file)"
                ),
            });
        }
        let cache = self.repos_dir.join(format!("{repository}.git"));
        let git_env = self.git_environment(clone_url, auth);
        // The common case, a tree that exists and a sha already cached, costs two git processes.
        if self.move_tree(&tree, sha).await.is_ok() {
            let note = format!(
                "checked out {sha} in {} (cache hit, tree reused)",
                tree.display()
            );
            return Ok((tree, note));
        }
        // Fetches and worktree changes touch the shared cache: one at a time per repository. Moving an
        // existing tree only touches that tree, which only one deploy uses at a time.
        let lock = self.repository_lock(repository).await;
        let fetched = {
            let _guard = lock.lock().await;
            self.ensure_commit(&cache, repository, clone_url, sha, &git_env)
                .await?
        };
        let reused = match self.move_tree(&tree, sha).await {
            Ok(()) => true,
            Err(e) => {
                if tree.join(".git").is_file() {
                    tracing::info!(tree = %tree.display(), "rebuilding the working tree: {e}");
                } else {
                    tracing::info!(tree = %tree.display(), "creating the working tree (the first deploy here)");
                }
                let _guard = lock.lock().await;
                self.rebuild_tree(&cache, &tree, sha).await?;
                false
            }
        };
        let note = format!(
            "checked out {sha} in {} ({}, {})",
            tree.display(),
            if fetched { "fetched" } else { "cache hit" },
            if reused {
                "tree reused"
            } else {
                "tree created"
            }
        );
        Ok((tree, note))
    }

    /// `work_dir/<app>/<environment>`, checked to lie inside `work_dir` (also through symlinks) before
    /// anything is created or removed there.
    pub fn tree_path(
        &self,
        app: &AppName,
        environment: &Environment,
    ) -> Result<PathBuf, CheckoutError> {
        let tree = self.work_dir.join(app).join(environment);
        let outside = || CheckoutError::OutsideWorkDir {
            path: tree.display().to_string(),
            work_dir: self.work_dir.display().to_string(),
        };
        let single = |name: &str| {
            let mut parts = Path::new(name).components();
            matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none()
        };
        if !single(app.as_str()) || !single(environment.as_str()) {
            return Err(outside());
        }
        let root = std::path::absolute(&self.work_dir).map_err(|_| outside())?;
        let resolved = std::path::absolute(&tree).map_err(|_| outside())?;
        if !resolved.starts_with(&root) || resolved == root {
            return Err(outside());
        }
        // Symlinks: the real directories, where they exist, must be inside the real work directory.
        if let (Ok(real_root), Some(parent)) = (root.canonicalize(), resolved.parent())
            && let Ok(real_parent) = parent.canonicalize()
            && !real_parent.starts_with(&real_root)
        {
            return Err(outside());
        }
        Ok(tree)
    }

    async fn repository_lock(&self, repository: &Repository) -> Arc<Mutex<()>> {
        self.cache_locks
            .lock()
            .await
            .entry(repository.as_str().to_ascii_lowercase())
            .or_default()
            .clone()
    }

    fn git_environment(&self, clone_url: &str, auth: &GitAuth) -> Vec<(String, String)> {
        let mut env = vec![
            ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
            // A fetch that stalls (under 1 KB/s for a minute) gives up instead of holding the
            // repository's cache lock; the deploy's timeout bounds the whole checkout too.
            ("GIT_HTTP_LOW_SPEED_LIMIT".to_string(), "1000".to_string()),
            ("GIT_HTTP_LOW_SPEED_TIME".to_string(), "60".to_string()),
        ];
        if let (Some(token), true) = (&auth.token, clone_url.starts_with("https://")) {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("x-access-token:{}", token.expose()));
            env.extend([
                ("GIT_CONFIG_COUNT".into(), "1".into()),
                ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
                (
                    "GIT_CONFIG_VALUE_0".into(),
                    format!("Authorization: Basic {basic}"),
                ),
            ]);
        }
        if let Some(key) = &auth.deploy_key {
            env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 -o UserKnownHostsFile={} -o StrictHostKeyChecking=accept-new",
                    shell_quote(&key.display().to_string()),
                    shell_quote(&self.known_hosts.display().to_string())
                ),
            ));
        }
        env
    }

    /// Makes sure `sha` is in the cache; true if a fetch was needed.
    async fn ensure_commit(
        &self,
        cache: &Path,
        repository: &Repository,
        clone_url: &str,
        sha: &Sha,
        env: &[(String, String)],
    ) -> Result<bool, CheckoutError> {
        if !cache.join("HEAD").exists() {
            tokio::fs::create_dir_all(cache)
                .await
                .map_err(|source| CheckoutError::Io {
                    path: cache.display().to_string(),
                    source,
                })?;
            git(Some(cache), &["init", "--bare", "--quiet"], env, "init").await?;
        }
        let object = format!("{sha}^{{commit}}");
        if git(Some(cache), &["cat-file", "-e", &object], env, "cat-file")
            .await
            .is_ok()
        {
            return Ok(false);
        }
        git(
            Some(cache),
            &[
                "fetch",
                "--quiet",
                "--force",
                "--no-tags",
                clone_url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            env,
            "fetch",
        )
        .await?;
        if git(Some(cache), &["cat-file", "-e", &object], env, "cat-file")
            .await
            .is_err()
        {
            return Err(CheckoutError::MissingCommit {
                sha: sha.clone(),
                repository: repository.clone(),
            });
        }
        Ok(true)
    }

    /// Moves an existing tree to `sha`, discarding anything a previous run left in it.
    async fn move_tree(&self, tree: &Path, sha: &Sha) -> Result<(), CheckoutError> {
        if !tree.join(".git").is_file() {
            return Err(CheckoutError::Git {
                action: "worktree".into(),
                detail: "no working tree yet".into(),
            });
        }
        git_in(
            tree,
            &["checkout", "--quiet", "--force", "--detach", sha.as_str()],
            "checkout",
        )
        .await?;
        git_in(tree, &["clean", "-ffdxq"], "clean").await?;
        Ok(())
    }

    async fn rebuild_tree(
        &self,
        cache: &Path,
        tree: &Path,
        sha: &Sha,
    ) -> Result<(), CheckoutError> {
        if tree.exists() {
            tokio::fs::remove_dir_all(tree)
                .await
                .map_err(|source| CheckoutError::Io {
                    path: tree.display().to_string(),
                    source,
                })?;
        }
        if let Some(parent) = tree.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| CheckoutError::Io {
                    path: parent.display().to_string(),
                    source,
                })?;
        }
        git(Some(cache), &["worktree", "prune"], &[], "worktree prune").await?;
        let tree_text = tree.display().to_string();
        git(
            Some(cache),
            &[
                "worktree",
                "add",
                "--force",
                "--detach",
                "--quiet",
                &tree_text,
                sha.as_str(),
            ],
            &[],
            "worktree add",
        )
        .await?;
        Ok(())
    }
}

/// A URL git will read as a repository, never as an option.
fn clone_url_is_safe(url: &str) -> bool {
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
    !url.starts_with('-')
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && (schemes.iter().any(|s| url.starts_with(s)) || scp_like)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

async fn git_in(tree: &Path, args: &[&str], action: &str) -> Result<String, CheckoutError> {
    git_with(Place::Tree(tree), args, &[], action).await
}

/// Runs git with `args` (against `git_dir` if given); stdout on success, stderr in the error.
async fn git(
    git_dir: Option<&Path>,
    args: &[&str],
    env: &[(String, String)],
    action: &str,
) -> Result<String, CheckoutError> {
    let place = git_dir.map_or(Place::Here, Place::GitDir);
    git_with(place, args, env, action).await
}

/// Where git works: a bare repository, a working tree, or neither. Paths are passed as `OsStr`
/// arguments, never through text, so a non-UTF-8 path cannot become an empty one.
enum Place<'a> {
    Here,
    GitDir(&'a Path),
    Tree(&'a Path),
}

/// git's path, looked up on `PATH` once: spawning by bare name tries each `PATH` directory in turn
/// (a failed `execve` each) on every one of the two or more git processes a deploy starts. Plain
/// `git` (looked up at each spawn) when it is not found now.
static GIT: std::sync::LazyLock<std::ffi::OsString> = std::sync::LazyLock::new(|| {
    super::tools::on_path("git").map_or_else(|| "git".into(), PathBuf::into_os_string)
});

async fn git_with(
    place: Place<'_>,
    args: &[&str],
    env: &[(String, String)],
    action: &str,
) -> Result<String, CheckoutError> {
    let mut command = Command::new(&*GIT);
    match place {
        Place::Here => {}
        Place::GitDir(dir) => {
            command.arg("--git-dir").arg(dir);
        }
        Place::Tree(tree) => {
            command.arg("-C").arg(tree);
        }
    }
    tracing::trace!(action, "git starts");
    let output = command
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| CheckoutError::Git {
            action: action.to_string(),
            detail: format!("cannot run git: {e}"),
        })?;
    tracing::trace!(action, status = %output.status, "git ended");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CheckoutError::Git {
            action: action.to_string(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}
