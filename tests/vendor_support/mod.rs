//! Shared by the vendor-habit tests: a one-card full-refresh config against the simulator.
#![allow(dead_code)]

use std::path::Path;

use community_sync::sim::Sim;

/// The one-card envelope: "0000" is success, 500/503/"9999" mean busy.
pub const ONECARD_RESPONSE: &str = r#"[sources.response]
success = { path = "/code", in = ["0000"] }
retry = { path = "/code", in = [500, 503, "9999"] }
message = "/msg"
code = "/code""#;

/// A one-card source with one full-refresh stream of cardholders (100 per page, the system's
/// total at /data/total, cancelled cards deleted), pointed at `sim` and its platform, with
/// `response` (a `[sources.response]` table or nothing), `stream_extra` lines, short backoffs
/// and, if given, a control socket of its own.
pub fn onecard_refresh_config(
    sim: &Sim,
    store: &Path,
    socket: Option<&Path>,
    response: &str,
    stream_extra: &str,
) -> String {
    let daemon = socket
        .map(|s| format!("[daemon]\ncontrol_socket = {s:?}"))
        .unwrap_or_default();
    format!(
        r#"
[store]
path = {store:?}
{daemon}
[platform]
url = "{platform}"
[platform.auth]
type = "bearer"
token = {{ value = "{token}" }}
[[sources]]
name = "onecard"
base_url = "{base}"
[sources.auth]
type = "signed"
app_key = "ykt-demo"
secret = {{ value = "{secret}" }}
location = "query"
[sources.http]
retries = 2
backoff_initial_ms = 1
backoff_max_ms = 5
{response}
[[sources.streams]]
name = "cardholders"
entity = "card_account"
path = "/api/ykt/v1/cardholders"
records = "/data/rows"
key = "kh"
mode = "full_refresh"
deleted_when = {{ path = "kzt", in = ["注销"] }}
pagination = {{ type = "page_number", page_param = "page", size_param = "rows", size = 100, total_path = "/data/total" }}
{stream_extra}
[sources.streams.fields]
card_no = "kh"
name = "xm"
id_number = "sfzh"
phone = "sjhm"
"#,
        platform = sim.urls.platform,
        token = community_sync::sim::PLATFORM_TOKEN,
        base = sim.urls.onecard,
        secret = community_sync::sim::ONECARD_SECRET,
    )
}

/// Writes a config holding inline secrets, owner-only (as the loader demands).
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("config written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("config made private");
    }
}
