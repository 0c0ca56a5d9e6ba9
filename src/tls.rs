//! The platform's HTTP client: TLS verification always on, an optional private CA bundle
//! (`platform.http.ca_file`), an optional client certificate for mutual TLS
//! (`platform.client_cert` + `platform.client_key`), and plain http refused for a non-loopback
//! platform unless `platform.http.allow_insecure_http = true` (warned about at every start).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn resolve(file: &str, dir: &Path) -> Result<PathBuf, String> {
    crate::source::secret::expand_path(file, dir).map_err(|p| p.0)
}

/// Checks the platform URL's scheme against `allow_insecure_http`.
pub fn check_platform_url(config: &Config) -> Result<(), String> {
    let p = &config.platform;
    let url = url::Url::parse(&p.url).map_err(|e| format!("platform.url is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" if p.http.allow_insecure_http => {
            tracing::warn!(
                host = url.host_str().unwrap_or(""),
                "plain http to the platform is allowed by platform.http.allow_insecure_http: the token and personal data travel unencrypted"
            );
            Ok(())
        }
        "http" => Err(format!(
            "platform.url uses plain http to the non-loopback host {}: personal data would travel unencrypted. Use https (with platform.http.ca_file for a private CA), or set platform.http.allow_insecure_http = true if the link is protected otherwise",
            url.host_str().unwrap_or("")
        )),
        other => Err(format!("platform.url scheme {other:?} is not http or https")),
    }
}

/// Builds the platform client (timeouts, no redirects, TLS as configured).
pub fn platform_client(config: &Config) -> Result<reqwest::Client, String> {
    check_platform_url(config)?;
    let p = &config.platform;
    let dir = config.path.parent().unwrap_or(Path::new("."));
    let secs = |v: f64, key: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!(
                "platform.http.{key} must be a positive number of seconds"
            ))
        }
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(false)
        .connect_timeout(secs(p.http.connect_timeout_secs, "connect_timeout_secs")?)
        .timeout(secs(p.http.timeout_secs, "timeout_secs")?)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &p.http.ca_file {
        let path = resolve(ca, dir)?;
        let pem = std::fs::read(&path)
            .map_err(|e| format!("cannot read platform.http.ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "platform.http.ca_file {} is not a PEM certificate bundle: {e}",
                path.display()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "platform.http.ca_file {} holds no certificate",
                path.display()
            ));
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    match (&p.client_cert, &p.client_key) {
        (Some(cert), Some(key)) => {
            let cert_path = resolve(cert, dir)?;
            let key_path = resolve(key, dir)?;
            if let Err(mode) = crate::crypto::check_private(&key_path, 0o077) {
                return Err(format!(
                    "platform.client_key {} is readable by group or others (mode {mode:04o}); run `chmod 600 {}`",
                    key_path.display(),
                    key_path.display()
                ));
            }
            let mut pem = std::fs::read(&cert_path).map_err(|e| {
                format!(
                    "cannot read platform.client_cert {}: {e}",
                    cert_path.display()
                )
            })?;
            let key_pem = zeroize::Zeroizing::new(std::fs::read(&key_path).map_err(|e| {
                format!(
                    "cannot read platform.client_key {}: {e}",
                    key_path.display()
                )
            })?);
            pem.push(b'\n');
            pem.extend_from_slice(&key_pem);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "platform.client_cert {} / client_key {}: not a PEM certificate and private key: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            });
            zeroize::Zeroize::zeroize(&mut pem);
            builder = builder.identity(identity?);
        }
        (None, None) => {}
        _ => {
            return Err(
                "platform.client_cert and platform.client_key must be given together".into(),
            )
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the platform HTTP client: {e}"))
}
