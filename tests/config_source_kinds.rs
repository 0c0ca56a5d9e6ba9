//! `check` on SQL and file sources: each mistake is named by file, key path and fix.

use std::path::Path;

use community_sync::config::Config;

fn check(sources: &str) -> String {
    let text = format!(
        "[platform]\nurl = \"http://127.0.0.1:9/events\"\n{sources}\n[code_tables.care]\n\"1\" = \"1\"\n"
    );
    match Config::from_toml(&text, Path::new("/etc/community-sync/test.toml")) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

const SQL_SOURCE: &str = r#"
[[sources]]
name = "mz"
type = "sql"
[sources.database]
url = "mysql://sync_ro@10.0.0.5:3306/exchange"
password = { file = "mz-db" }
"#;

fn sql_stream(extra: &str) -> String {
    format!(
        r#"{SQL_SOURCE}
[[sources.streams]]
name = "elders"
entity = "elder"
table = "v_elder"
key = "elder_id"
{extra}
[sources.streams.fields]
elder_no = "elder_id"
id_number = "sfzh"
"#
    )
}

#[test]
fn a_good_sql_source_and_a_good_file_source_pass() {
    assert_eq!(check(&sql_stream("mode = \"full_refresh\"")), "ok");
    assert_eq!(
        check(
            r#"
[[sources]]
name = "tz"
type = "files"
[sources.files]
dir = "inbox"
[[sources.streams]]
name = "visits"
entity = "elder"
semantics = "append"
key = "档案编号"
[sources.streams.fields]
elder_no = "档案编号"
id_number = "身份证号"
"#
        ),
        "ok"
    );
}

#[test]
fn sql_mistakes_name_the_key_and_the_fix() {
    let cases = [
        (
            SQL_SOURCE.replace("sync_ro@", "sync_ro:secret@") + "[[sources.streams]]\nname = \"a\"\nentity = \"elder\"\ntable = \"t\"\nkey = \"id\"\nmode = \"full_refresh\"\n[sources.streams.fields]\nid_number = \"sfzh\"\n",
            "sources[mz].database.url",
            "password = { file",
        ),
        (
            SQL_SOURCE.replace("mysql://", "oracle://") + "[[sources.streams]]\nname = \"a\"\nentity = \"elder\"\ntable = \"t\"\nkey = \"id\"\nmode = \"full_refresh\"\n[sources.streams.fields]\nid_number = \"sfzh\"\n",
            "sources[mz].database.url",
            "postgres://",
        ),
        (sql_stream("sql = \"SELECT 1\"\nmode = \"full_refresh\""), "sources[mz].streams[elders].table", "exactly one of"),
        (sql_stream(""), "sources[mz].streams[elders].incremental", "full_refresh"),
        (
            sql_stream("[sources.streams.incremental]\ncursor_field = \"update_time\"\nparam = \"since\""),
            "sources[mz].streams[elders].incremental.param",
            "remove param",
        ),
        (
            sql_stream("[sources.streams.incremental]\ncursor_field = \"update_time\"\ncursor_format = \"%Y%m%d\""),
            "incremental.cursor_format",
            "\"integer\"",
        ),
        (sql_stream("mode = \"full_refresh\"\npath = \"/x\""), "sources[mz].streams[elders].path", "remove it"),
        (
            sql_stream("mode = \"full_refresh\"").replace("key = \"elder_id\"", "key = \"elder-id\""),
            "sources[mz].streams[elders].key",
            "not a column name",
        ),
        (
            sql_stream("mode = \"full_refresh\"").replace("table = \"v_elder\"", "sql = \"DELETE FROM v_elder\""),
            "sources[mz].streams[elders].sql",
            "SELECT",
        ),
        (
            sql_stream("mode = \"full_refresh\"").replace("type = \"sql\"", "type = \"sql\"\nbase_url = \"http://x\""),
            "sources[mz].base_url",
            "remove it",
        ),
    ];
    for (toml, key, fix) in cases {
        let e = check(&toml);
        assert!(e.contains("/etc/community-sync/test.toml"), "{e}");
        assert!(e.contains(key), "expected {key} in: {e}");
        assert!(e.contains(fix), "expected {fix:?} in: {e}");
    }
}

#[test]
fn file_mistakes_name_the_key_and_the_fix() {
    let src = "[[sources]]\nname = \"tz\"\ntype = \"files\"\n[sources.files]\ndir = \"inbox\"\n";
    let stream = |extra: &str| {
        format!("{src}[[sources.streams]]\nname = \"visits\"\nentity = \"elder\"\nkey = \"档案编号\"\n{extra}\n[sources.streams.fields]\nelder_no = \"档案编号\"\nid_number = \"身份证号\"\n")
    };
    let cases = [
        (
            stream(""),
            "sources[tz].streams[visits].semantics",
            "\"replace\"",
        ),
        (
            stream("semantics = \"append\"\nmode = \"full_refresh\""),
            "sources[tz].streams[visits].mode",
            "semantics",
        ),
        (
            stream("semantics = \"append\"\nfolder = \"../etc\""),
            "sources[tz].streams[visits].folder",
            "sub-folder",
        ),
        (
            stream("semantics = \"append\"\nheader_row = 0"),
            "sources[tz].streams[visits].header_row",
            "from 1",
        ),
        (
            stream("semantics = \"append\"").replace("[sources.files]\ndir = \"inbox\"\n", ""),
            "sources[tz].files",
            "dir = ",
        ),
    ];
    for (toml, key, fix) in cases {
        let e = check(&toml);
        assert!(e.contains(key), "expected {key} in: {e}");
        assert!(e.contains(fix), "expected {fix:?} in: {e}");
    }
}
