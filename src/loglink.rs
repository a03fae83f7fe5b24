//! Links to zbot's own log pages: `<public_url>/deployments/<id>/log?token=<hex>`, where the token is
//! HMAC-SHA256(key, the deployment id in decimal). Deployment ids are sequential, so without the token
//! anyone who reaches the listener could read every deploy's log; with it, a link opens only its own
//! deploy's log and cannot be guessed. The runner makes the links, the webhook listener checks them.
//!
//! The key is 64 random bytes generated once into `<data_dir>/log-link.key` (128 hex digits, mode 0600),
//! not derived from the webhook secret: that secret is optional (`insecure_skip_signature`), is known
//! to whoever sets up the hook on GitHub, and rotating it should not break every log link posted so far.
//! Deleting the file revokes every link at once (zbot makes a new key when it starts).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};

use crate::domain::DeploymentId;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "log-link.key";

/// Key length in bytes: SHA-256's block size, which HMAC uses as it is.
const KEY_LEN: usize = 64;

/// Why the key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum LinkKeyError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a log link key (128 hex digits): remove it and zbot makes a new one", .path.display())]
    Malformed { path: PathBuf },
    #[error("{} can be read by other users (mode {mode:o}): chmod 600 it", .path.display())]
    Exposed { path: PathBuf, mode: u32 },
}

/// The key of the log link tokens. `Debug` does not show it.
#[derive(Clone)]
pub struct LinkKey([u8; KEY_LEN]);

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(***)")
    }
}

impl LinkKey {
    /// The key in `<data_dir>/log-link.key`, made (from the system's random source) if the file does
    /// not exist yet.
    ///
    /// # Errors
    /// The file cannot be read or made, does not hold 128 hex digits, or other users may read it.
    pub fn load_or_create(data_dir: &Path) -> Result<LinkKey, LinkKeyError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::metadata(&path) {
            Ok(_) => Self::load(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(data_dir, &path),
            Err(source) => Err(LinkKeyError::Read { path, source }),
        }
    }

    fn load(path: &Path) -> Result<LinkKey, LinkKeyError> {
        let read_error = |source| LinkKeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_error)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(LinkKeyError::Exposed {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        hex::decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
            .map(LinkKey)
            .ok_or_else(|| LinkKeyError::Malformed {
                path: path.to_path_buf(),
            })
    }

    /// Writes a new key beside `path` and links it into place, so no reader ever sees half a key and
    /// a key another zbot made first wins.
    fn create(data_dir: &Path, path: &Path) -> Result<LinkKey, LinkKeyError> {
        let create_error = |source| LinkKeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(create_error)?;
        let mut key = [0; KEY_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut key))
            .map_err(create_error)?;
        let draft = data_dir.join(format!("{KEY_FILE}.{}.new", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&draft)
            .and_then(|mut file| {
                writeln!(file, "{}", hex::encode(key))?;
                file.sync_all()
            })
            .and_then(|()| std::fs::hard_link(&draft, path));
        let _ = std::fs::remove_file(&draft);
        match written {
            Ok(()) => Ok(LinkKey(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(source) => Err(create_error(source)),
        }
    }

    fn mac(&self, deployment_id: DeploymentId) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&self.0.into());
        mac.update(deployment_id.to_string().as_bytes());
        mac
    }

    /// The token of `deployment_id`'s log link: 64 hex digits.
    pub fn token(&self, deployment_id: DeploymentId) -> String {
        hex::encode(self.mac(deployment_id).finalize().into_bytes())
    }

    /// Whether `token` is `deployment_id`'s, compared in constant time.
    pub fn verify(&self, deployment_id: DeploymentId, token: &str) -> bool {
        hex::decode(token).is_ok_and(|bytes| self.mac(deployment_id).verify_slice(&bytes).is_ok())
    }
}

/// Makes the links to zbot's own log pages.
#[derive(Clone, Debug)]
pub struct LogLinks {
    /// Where people reach the listener, without a trailing slash.
    base: String,
    key: LinkKey,
}

impl LogLinks {
    /// Links on the listener at `public_url` (`[webhook] public_url`, else `http://<listen>`).
    pub fn new(public_url: &str, key: LinkKey) -> LogLinks {
        LogLinks {
            base: public_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// `<public_url>/deployments/<id>/log?token=<token>`.
    pub fn url(&self, deployment_id: DeploymentId) -> String {
        format!(
            "{}/deployments/{deployment_id}/log?token={}",
            self.base,
            self.key.token(deployment_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let key = LinkKey::load_or_create(&data).unwrap();
        let file = data.join(KEY_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim().len(), 128);
        let again = LinkKey::load_or_create(&data).unwrap();
        assert_eq!(key.token(DeploymentId(7)), again.token(DeploymentId(7)));
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            1,
            "no draft left"
        );
        assert_eq!(format!("{key:?}"), "LinkKey(***)");

        let other = tempfile::tempdir().unwrap();
        let other_key = LinkKey::load_or_create(other.path()).unwrap();
        assert_ne!(
            key.token(DeploymentId(7)),
            other_key.token(DeploymentId(7)),
            "random per installation"
        );
    }

    #[test]
    fn a_bad_key_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(KEY_FILE);
        std::fs::write(&file, "not hex\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = LinkKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, LinkKeyError::Malformed { .. }), "{error}");
        std::fs::write(&file, format!("{}\n", "ab".repeat(KEY_LEN))).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = LinkKey::load_or_create(dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("can be read by other users (mode 644): chmod 600 it"),
            "{error}"
        );
    }

    #[test]
    fn a_token_opens_its_own_deployment_only() {
        let key = LinkKey([7; KEY_LEN]);
        let token = key.token(DeploymentId(1301));
        assert_eq!(token.len(), 64);
        assert!(key.verify(DeploymentId(1301), &token));
        assert!(
            key.verify(DeploymentId(1301), &token.to_uppercase()),
            "hex is hex"
        );
        let cases = [
            (1302, token.clone()),
            (1301, key.token(DeploymentId(1302))),
            (1301, String::new()),
            (1301, token[..62].to_string()),
            (1301, format!("{token}00")),
            (1301, "zz".repeat(32)),
            (1301, LinkKey([8; KEY_LEN]).token(DeploymentId(1301))),
        ];
        for (id, token) in cases {
            assert!(!key.verify(DeploymentId(id), &token), "{id} {token}");
        }
    }

    #[test]
    fn links_carry_the_token() {
        let key = LinkKey([7; KEY_LEN]);
        let links = LogLinks::new("https://zbot.example.com/", key.clone());
        assert_eq!(
            links.url(DeploymentId(42)),
            format!(
                "https://zbot.example.com/deployments/42/log?token={}",
                key.token(DeploymentId(42))
            )
        );
    }
}
