//! `community-sync check [--connect]`: is this config ready to run? The file is valid, the
//! store key and every secret it names can be read (as the command reads them: from a shell
//! `${CREDENTIALS_DIRECTORY}` is the credentials/ directory beside the config, the very files
//! the unit hands the service); with `--connect`, every source answers (authentication and
//! one page of each stream) and so does the platform (`push::probe`).

use std::path::Path;
use std::process::ExitCode;

use crate::cli::out::outln;
use crate::config::Config;

/// One line of the check: what, ok or FAILED, and the detail (error texts masked by the
/// caller: `scrub`).
fn line(what: &str, item: &str, ok: bool, detail: &str) {
    outln!(
        "{:<10} {:<16} {:<7} {}",
        what,
        item,
        if ok { "ok" } else { "FAILED" },
        detail
    );
}

fn scrub(e: impl std::fmt::Display) -> String {
    crate::mask::scrub_text(&e.to_string())
}

/// Exit 0 when everything checked is fine; 2 when a key or secret cannot be read (nothing
/// could sync); 1 when `--connect` found a system or the platform unreachable or refusing.
pub async fn run(config_path: &Path, config: &Config, connect: bool) -> ExitCode {
    outln!(
        "{}: ok ({} sources, {} streams)",
        config_path.display(),
        config.sources.len(),
        config
            .sources
            .iter()
            .map(|s| s.streams.len())
            .sum::<usize>()
    );
    if !local(config) {
        return ExitCode::from(2);
    }
    if connect && !(sources(config).await & platform(config).await) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The store key and the secrets of every enabled source and of the platform.
fn local(config: &Config) -> bool {
    let mut ok = true;
    match crate::store::Codec::from_config(config) {
        Ok(codec) => match codec.active_key() {
            Some(k) => line(
                "store key",
                "key_file",
                true,
                &format!("key id {}", k.id_hex()),
            ),
            None => line(
                "store key",
                "key_file",
                true,
                "none: personal data is stored unencrypted ([security] key_file unset)",
            ),
        },
        Err(e) => {
            ok = false;
            line(
                "store key",
                "key_file",
                false,
                &scrub(format!(
                    "{e} A new install makes the key once with `community-sync keygen --out FILE`."
                )),
            );
        }
    }
    let dir = config.path.parent().unwrap_or(Path::new("."));
    for src in config.sources.iter().filter(|s| s.enabled) {
        if let Err(e) = crate::source::Source::open(src, dir, tz(config)) {
            ok = false;
            line(&src.name, "secrets", false, &scrub(e));
        }
    }
    if config.platform.kind == crate::config::PlatformKind::Http {
        if let Err(e) = crate::push::Pusher::new(config) {
            ok = false;
            line("platform", "secrets", false, &scrub(e));
        }
    }
    if ok {
        line(
            "secrets",
            "all",
            true,
            "every secret the config names can be read",
        );
    }
    ok
}

/// Reaches every enabled source: authenticate and fetch one page per stream (HTTP), run the
/// stream's query with `LIMIT 1` (SQL), or read the folder (files). True when all succeeded.
async fn sources(config: &Config) -> bool {
    let dir = config.path.parent().unwrap_or(Path::new("."));
    let mut all_ok = true;
    for src in config.sources.iter().filter(|s| s.enabled) {
        let reader = match crate::source::Source::open(src, dir, tz(config)) {
            Ok(c) => c,
            Err(e) => {
                all_ok = false;
                line(&src.name, "*", false, &scrub(e));
                continue;
            }
        };
        for stream in &src.streams {
            match reader.probe(stream).await {
                Ok(what) => line(&src.name, &stream.name, true, &what),
                Err(e) => {
                    all_ok = false;
                    line(&src.name, &stream.name, false, &scrub(e));
                }
            }
        }
    }
    all_ok
}

fn tz(config: &Config) -> chrono_tz::Tz {
    config.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai)
}

/// Reaches the platform and authenticates, changing nothing: an HTTP platform takes an empty
/// batch; a JetStream platform's stream exists (or is created as configured), listens on this
/// district's subjects with a long enough duplicate window, and answers a publish it refuses.
async fn platform(config: &Config) -> bool {
    if config.platform.kind == crate::config::PlatformKind::Jetstream {
        return match crate::push::JetStreamSink::probe(config).await {
            Ok(what) => {
                line("platform", "jetstream", true, &what);
                true
            }
            Err(e) => {
                line("platform", "jetstream", false, &scrub(e));
                false
            }
        };
    }
    match crate::push::probe(config).await {
        Ok(p) => {
            line(
                "platform",
                "events",
                true,
                &format!(
                    "{} accepted an empty batch (HTTP {}, {} ms)",
                    p.endpoint, p.status, p.millis
                ),
            );
            true
        }
        Err(e) => {
            line("platform", "events", false, &scrub(e));
            false
        }
    }
}
