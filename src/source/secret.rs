//! Secrets: resolved once from the environment, a file (systemd credentials) or an inline
//! value, and wrapped so that they never show up in `Debug` output, logs or errors.

use std::path::{Path, PathBuf};

use super::config::SecretRef;

/// A secret string. `Debug` and `Display` print `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
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
/// A file path may start with `${CREDENTIALS_DIRECTORY}` / `$CREDENTIALS_DIRECTORY`; a relative
/// path is taken relative to `base_dir` (the config file's directory). One trailing newline
/// (`\n` or `\r\n`) is removed.
pub fn resolve(secret: &SecretRef, base_dir: &Path) -> Result<Secret, SecretProblem> {
    if let Some(var) = &secret.env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret(trim_newline(v))),
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
        if let Err(mode) = crate::crypto::check_private(&path, 0o007) {
            return Err(SecretProblem(format!(
                "secret file {} is readable by others (mode {mode:04o}); run `chmod 600 {}`",
                path.display(),
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
                    Ok(Secret(v))
                }
            }
            Err(e) => Err(SecretProblem(format!(
                "cannot read secret file {}: {e}; check the path and that the service may read it",
                path.display()
            ))),
        };
    }
    if let Some(v) = &secret.value {
        return Ok(Secret(trim_newline(v.clone())));
    }
    Err(SecretProblem(
        "no secret configured: give env = \"VAR\", file = \"PATH\" or (tests only) value".into(),
    ))
}

/// Expands `${CREDENTIALS_DIRECTORY}` and resolves a relative path against `base_dir`.
pub(crate) fn expand_path(file: &str, base_dir: &Path) -> Result<PathBuf, SecretProblem> {
    let rest = file
        .strip_prefix("${CREDENTIALS_DIRECTORY}")
        .or_else(|| file.strip_prefix("$CREDENTIALS_DIRECTORY"));
    let path = match rest {
        Some(rest) => {
            let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| {
                SecretProblem(format!(
                    "secret file {file:?} uses $CREDENTIALS_DIRECTORY, which is not set; run under systemd with LoadCredential= or give a full path"
                ))
            })?;
            PathBuf::from(format!("{dir}{rest}"))
        }
        None => PathBuf::from(file),
    };
    Ok(if path.is_relative() {
        base_dir.join(path)
    } else {
        path
    })
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
