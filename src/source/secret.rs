//! Secrets: resolved once from the environment, a file (systemd credentials) or an inline
//! value, and wrapped so that they never show up in `Debug` output, logs or errors.

use std::path::{Path, PathBuf};

use super::config::SecretRef;

/// A secret string, wiped from memory when dropped. `Debug` and `Display` print `***`; read it
/// with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(zeroize::Zeroizing::new(value.into()))
    }

    /// The secret itself: only for building a request, never for messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be read. Names where it was looked for, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem(pub String);

/// Resolves a secret: `env`, then `file`, then inline `value` (first one configured wins).
/// A file path may start with `${CREDENTIALS_DIRECTORY}` / `$CREDENTIALS_DIRECTORY` (see
/// [`expand_path`]); a relative path is taken relative to `base_dir` (the config file's
/// directory). One trailing newline (`\n` or `\r\n`) is removed.
pub fn resolve(secret: &SecretRef, base_dir: &Path) -> Result<Secret, SecretProblem> {
    if let Some(var) = &secret.env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(trim_newline(v))),
            Ok(_) => Err(SecretProblem(format!(
                "environment variable {var} is empty; export it with the secret (or use file = \"...\")"
            ))),
            Err(_) => Err(SecretProblem(format!(
                "environment variable {var} is not set; export it with the secret (or use file = \"...\")"
            ))),
        };
    }
    if let Some(file) = &secret.file {
        let path = expand_path(file, base_dir)?;
        if let Err(p) = crate::crypto::check_file_mode(&path, crate::crypto::FileKind::Secret) {
            return Err(SecretProblem(format!(
                "secret file {} is {} (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                p.why,
                p.mode,
                path.display()
            )));
        }
        return match std::fs::read_to_string(&path) {
            Ok(v) => {
                let v = trim_newline(v);
                if v.is_empty() {
                    Err(SecretProblem(format!(
                        "secret file {} is empty",
                        path.display()
                    )))
                } else {
                    Ok(Secret::new(v))
                }
            }
            Err(e) => Err(SecretProblem(format!(
                "cannot read secret file {}: {e}; check the path and that the service may read it{}",
                path.display(),
                outside_service_note(file, base_dir)
            ))),
        };
    }
    if let Some(v) = &secret.value {
        return Ok(Secret::new(trim_newline(v.clone())));
    }
    Err(SecretProblem(
        "no secret configured: give env = \"VAR\", file = \"PATH\" or (tests only) value".into(),
    ))
}

/// The directory `${CREDENTIALS_DIRECTORY}` stands for when the variable is not set (a shell,
/// not the service): `credentials/` beside the config file. The unit's `LoadCredential=`
/// lines read from `/etc/community-sync/credentials/`, beside
/// `/etc/community-sync/community-sync.toml`, so an operator's command reads the very files
/// systemd hands the service, and nobody has to export anything. Those files stay readable by
/// root only (0600); systemd gives the service its own copies.
pub fn credentials_fallback(base_dir: &Path) -> PathBuf {
    base_dir.join("credentials")
}

/// Expands `${CREDENTIALS_DIRECTORY}` (systemd's credentials of the service, else
/// [`credentials_fallback`]) and resolves a relative path against `base_dir`.
pub(crate) fn expand_path(file: &str, base_dir: &Path) -> Result<PathBuf, SecretProblem> {
    let rest = file
        .strip_prefix("${CREDENTIALS_DIRECTORY}")
        .or_else(|| file.strip_prefix("$CREDENTIALS_DIRECTORY"));
    let path = match rest {
        Some(rest) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| credentials_fallback(base_dir));
            PathBuf::from(format!("{}{rest}", dir.display()))
        }
        None => PathBuf::from(file),
    };
    Ok(if path.is_relative() {
        base_dir.join(path)
    } else {
        path
    })
}

/// For a path under `${CREDENTIALS_DIRECTORY}` read outside the service: what it stood for.
fn outside_service_note(file: &str, base_dir: &Path) -> String {
    if file.contains("CREDENTIALS_DIRECTORY")
        && std::env::var_os("CREDENTIALS_DIRECTORY").is_none_or(|d| d.is_empty())
    {
        format!(
            " ($CREDENTIALS_DIRECTORY is not set outside the service, so it stands for {})",
            credentials_fallback(base_dir).display()
        )
    } else {
        String::new()
    }
}

fn trim_newline(mut v: String) -> String {
    if v.ends_with('\n') {
        v.pop();
        if v.ends_with('\r') {
            v.pop();
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sref(env: Option<&str>, file: Option<&str>, value: Option<&str>) -> SecretRef {
        SecretRef {
            env: env.map(String::from),
            file: file.map(String::from),
            value: value.map(String::from),
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_relative_to_config_dir_and_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sec"), "abc\r\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("sec"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        let s = resolve(&sref(None, Some("sec"), None), dir.path()).unwrap();
        assert_eq!(s.expose(), "abc");
    }

    #[cfg(unix)]
    #[test]
    fn secret_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sec");
        std::fs::write(&p, "abc").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = resolve(&sref(None, Some("sec"), None), dir.path()).unwrap_err();
        assert!(e.0.contains("chmod 600") && e.0.contains("sec"), "{}", e.0);
        assert!(!e.0.contains("abc"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            resolve(&sref(None, Some("sec"), None), dir.path())
                .unwrap()
                .expose(),
            "abc"
        );
    }

    #[test]
    fn missing_env_names_the_variable() {
        let e = resolve(
            &sref(Some("CS_TEST_SURELY_UNSET_VAR_42"), None, None),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.0.contains("CS_TEST_SURELY_UNSET_VAR_42"), "{}", e.0);
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = resolve(
            &sref(None, Some("/nonexistent/cs-secret"), None),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.0.contains("/nonexistent/cs-secret"), "{}", e.0);
    }

    #[test]
    fn credentials_directory_outside_the_service_is_credentials_beside_the_config() {
        // The test process runs outside systemd: the variable is not set.
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_some() {
            return;
        }
        let base = Path::new("/etc/community-sync");
        assert_eq!(
            expand_path("${CREDENTIALS_DIRECTORY}/store-key", base).unwrap(),
            Path::new("/etc/community-sync/credentials/store-key")
        );
        assert_eq!(
            expand_path("$CREDENTIALS_DIRECTORY/onecard", base).unwrap(),
            Path::new("/etc/community-sync/credentials/onecard")
        );
        let e = resolve(
            &sref(None, Some("${CREDENTIALS_DIRECTORY}/nosuch"), None),
            Path::new("/nonexistent-cs"),
        )
        .unwrap_err();
        assert!(
            e.0.contains("/nonexistent-cs/credentials/nosuch")
                && e.0.contains("not set outside the service"),
            "{}",
            e.0
        );
    }

    #[test]
    fn inline_value_and_nothing_configured() {
        assert_eq!(
            resolve(&sref(None, None, Some("v\n")), Path::new("."))
                .unwrap()
                .expose(),
            "v"
        );
        assert!(resolve(&sref(None, None, None), Path::new(".")).is_err());
    }
}
