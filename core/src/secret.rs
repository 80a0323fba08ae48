//! The deployment secret: the HMAC key behind signed cursors, `X-E2A-Auth-*` signatures and
//! magic links. It lives in a file (mode 0600) and is generated on first start when absent.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Bytes that must never reach a log line: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create secret file {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("secret file {path} is too short: need at least 32 bytes of secret, found {len}")]
    TooShort { path: String, len: usize },
    #[error("secret file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    TooOpen { path: String, mode: u32 },
}

/// Reads the secret from `path`, creating it (64 hex characters of OS randomness, mode 0600)
/// when the file does not exist. Surrounding whitespace in the file is ignored, so an
/// operator may write it with `echo`.
pub fn load_or_create(path: &Path) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    match fs::read(path) {
        Ok(bytes) => {
            let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
            if mode & 0o077 != 0 {
                return Err(SecretError::TooOpen { path: shown, mode });
            }
            let trimmed = bytes.trim_ascii().to_vec();
            if trimmed.len() < 32 {
                return Err(SecretError::TooShort { path: shown, len: trimmed.len() });
            }
            Ok(Secret(trimmed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = crate::ids::mint("", 32);
            let create = |p: &Path| -> std::io::Result<()> {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)?;
                }
                // create_new: two processes starting together must not overwrite each other.
                let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(p)?;
                f.write_all(value.as_bytes())?;
                f.write_all(b"\n")?;
                f.sync_all()
            };
            match create(path) {
                Ok(()) => {
                    tracing::info!(path = %shown, "generated a new deployment secret");
                    Ok(Secret(value.into_bytes()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(source) => Err(SecretError::Create { path: shown, source }),
            }
        }
        Err(source) => Err(SecretError::Read { path: shown, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_with_mode_0600_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/hmac.secret");
        let first = load_or_create(&path).expect("created");
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(first.expose().len(), 64);
        assert_eq!(load_or_create(&path).expect("read"), first);
        assert_eq!(format!("{first:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn refuses_short_or_world_readable_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = dir.path().join("short");
        fs::write(&short, "abc").expect("write");
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(load_or_create(&short), Err(SecretError::TooShort { .. })));
        let open = dir.path().join("open");
        fs::write(&open, "x".repeat(40)).expect("write");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(load_or_create(&open), Err(SecretError::TooOpen { .. })));
    }
}
