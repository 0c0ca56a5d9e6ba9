//! The desk's pages: server-rendered HTML, every value escaped (`report::html::esc`), every
//! personal value masked (`crate::mask`) unless its record was revealed for this one view.
//! No inline script or style (the CSP forbids them): `/static/desk.css` and `/static/desk.js`.

use std::fmt::Write as _;

use chrono_tz::Tz;

use crate::model::PersonFields;
use crate::reconcile::person_key;
use crate::report::html::esc;

use super::accounts::Session;
use super::queue::{DecisionRow, Entry, Explanation, Filter, RecordView, Scope};
use super::text::{matcher_word, t, Lang};

/// What every page needs.
pub struct Frame<'a> {
    pub lang: Lang,
    pub tz: Tz,
    pub session: Option<&'a Session>,
    /// The path of this page (for the language switch to come back to).
    pub here: &'a str,
}

impl Frame<'_> {
    fn t(&self, key: &str) -> &'static str {
        t(self.lang, key)
    }

    fn csrf(&self) -> String {
        self.session
            .map(|s| {
                format!(
                    "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                    esc(&s.csrf)
                )
            })
            .unwrap_or_default()
    }

    /// RFC 3339 in the configured time zone, to the minute.
    fn time(&self, ts: &str) -> String {
        chrono::DateTime::parse_from_rfc3339(ts)
            .map(|d| {
                d.with_timezone(&self.tz)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_else(|_| ts.to_string())
    }
}

/// The page around `body`.
pub fn layout(f: &Frame<'_>, title: &str, body: &str) -> String {
    let mut nav = String::new();
    if let Some(s) = f.session {
        let _ = write!(
            nav,
            "<a href=\"/items\">{}</a><a href=\"/decisions\">{}</a>\
             <span class=\"who\" data-k=\"who\">{}</span>\
             <form method=\"post\" action=\"/logout\" class=\"inline\">{}<button class=\"link\">{}</button></form>",
            f.t("queue"),
            f.t("decisions"),
            esc(&s.reviewer.name),
            f.csrf(),
            f.t("logout")
        );
    }
    let _ = write!(
        nav,
        "<a class=\"lang\" href=\"/lang/{}?back={}\">{}</a>",
        f.lang.other().code(),
        esc(&url_encode(f.here)),
        f.t("lang_switch")
    );
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {app}</title>\
         <link rel=\"stylesheet\" href=\"/static/desk.css\">\
         <script src=\"/static/desk.js\" defer></script></head>\n\
         <body><header class=\"top\"><a class=\"brand\" href=\"/items\">{app}</a><nav>{nav}</nav></header>\n\
         <main>{body}</main></body></html>\n",
        lang = f.lang.html(),
        title = esc(title),
        app = f.t("app"),
    )
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A page with one message (errors, refusals).
pub fn message(f: &Frame<'_>, title: &str, text: &str) -> String {
    let body = format!(
        "<section class=\"card\"><h1>{}</h1><p data-k=\"message\">{}</p><p><a href=\"/items\">{}</a></p></section>",
        esc(title),
        esc(text),
        f.t("back")
    );
    layout(f, title, &body)
}

pub fn login(f: &Frame<'_>, login_csrf: &str, failed: bool) -> String {
    let error = if failed {
        format!(
            "<p class=\"error\" data-k=\"login-error\">{}</p>",
            f.t("login_failed")
        )
    } else {
        String::new()
    };
    let body = format!(
        "<section class=\"card narrow\"><h1>{login}</h1>{error}\
         <form method=\"post\" action=\"/login\" class=\"stack\">\
         <input type=\"hidden\" name=\"login_csrf\" value=\"{csrf}\">\
         <label>{name}<input name=\"name\" id=\"name\" autocomplete=\"username\" required></label>\
         <label>{pw}<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
         <button class=\"primary\" id=\"sign-in\">{login}</button></form></section>",
        login = f.t("login"),
        csrf = esc(login_csrf),
        name = f.t("name"),
        pw = f.t("password"),
    );
    layout(f, f.t("login"), &body)
}

pub fn welcome(f: &Frame<'_>, token: &str, name: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" data-k=\"welcome-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<section class=\"card narrow\"><h1>{title}</h1><p>{name_l}: <b>{name}</b></p>{error}\
         <form method=\"post\" action=\"/welcome\" class=\"stack\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <label>{pw} ({rules})<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"new-password\" minlength=\"10\" required></label>\
         <label>{pw2}<input type=\"password\" name=\"password2\" id=\"password2\" autocomplete=\"new-password\" minlength=\"10\" required></label>\
         <button class=\"primary\" id=\"set-password\">{set}</button></form></section>",
        title = f.t("welcome"),
        name_l = f.t("name"),
        name = esc(name),
        token = esc(token),
        pw = f.t("password"),
        rules = f.t("password_rules"),
        pw2 = f.t("password2"),
        set = f.t("set_password"),
    );
    layout(f, f.t("welcome"), &body)
}

fn kind_label(f: &Frame<'_>, kind: &str) -> String {
    f.t(&format!("kind_{kind}")).to_string()
}

fn state_label(f: &Frame<'_>, state: &str) -> String {
    f.t(&format!("state_{state}")).to_string()
}

/// The queue.
pub fn queue(
    f: &Frame<'_>,
    entries: &[Entry],
    communities: &std::collections::BTreeSet<String>,
    filter: &Filter,
    page: usize,
    per_page: usize,
) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} <small data-k=\"open-count\">{} {}</small></h1>",
        f.t("queue"),
        entries.len(),
        f.t("open_items")
    );
    b.push_str(&filter_form(f, communities, filter));
    if entries.is_empty() {
        let _ = write!(b, "<p class=\"empty\">{}</p>", f.t("none_open"));
        return layout(f, f.t("queue"), &b);
    }
    let _ = write!(
        b,
        "<div class=\"scroll\"><table class=\"queue\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        f.t("kind"),
        f.t("community"),
        f.t("f_name"),
        f.t("score_raised"),
        f.t("created")
    );
    for e in entries.iter().skip(page * per_page).take(per_page) {
        let it = &e.scope.item;
        let name = e
            .scope
            .record
            .as_ref()
            .and_then(|r| r.fields.name.as_deref())
            .map(crate::mask::name)
            .unwrap_or_default();
        let skipped = if e.skipped_by_me {
            format!(" <span class=\"tag\">{}</span>", f.t("skipped"))
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr data-item=\"{id}\"><td><a href=\"/items/{id}\">#{id}</a></td><td><a href=\"/items/{id}\">{kind}</a>{skipped}</td>\
             <td>{comm}</td><td>{name}</td><td>{score}</td><td>{created}</td></tr>",
            id = it.id,
            kind = esc(&kind_label(f, &it.kind)),
            comm = esc(e.scope.community().unwrap_or("")),
            name = esc(&name),
            score = it.score.map(|s| format!("{s:.2}")).unwrap_or_default(),
            created = esc(&f.time(&it.created_at)),
        );
    }
    b.push_str("</tbody></table></div>");
    b.push_str(&pager(f, filter, page, per_page, entries.len()));
    layout(f, f.t("queue"), &b)
}

fn filter_query(filter: &Filter, page: usize) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(c) = &filter.community {
        q.append_pair("community", c);
    }
    if let Some(k) = &filter.kind {
        q.append_pair("kind", k);
    }
    if page > 0 {
        q.append_pair("page", &page.to_string());
    }
    q.finish()
}

fn pager(f: &Frame<'_>, filter: &Filter, page: usize, per_page: usize, total: usize) -> String {
    let mut p = String::from("<nav class=\"pager\">");
    if page > 0 {
        let _ = write!(
            p,
            "<a href=\"/items?{}\">{}</a>",
            esc(&filter_query(filter, page - 1)),
            f.t("prev_page")
        );
    }
    if (page + 1) * per_page < total {
        let _ = write!(
            p,
            "<a href=\"/items?{}\">{}</a>",
            esc(&filter_query(filter, page + 1)),
            f.t("next_page")
        );
    }
    p.push_str("</nav>");
    p
}

fn filter_form(
    f: &Frame<'_>,
    communities: &std::collections::BTreeSet<String>,
    filter: &Filter,
) -> String {
    let opt = |value: &str, label: &str, selected: bool| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            esc(value),
            if selected { " selected" } else { "" },
            esc(label)
        )
    };
    let mut comm = opt("", f.t("all"), filter.community.is_none());
    for c in communities {
        comm.push_str(&opt(c, c, filter.community.as_deref() == Some(c)));
    }
    let mut kinds = opt("", f.t("all"), filter.kind.is_none());
    for k in ["match", "conflict", "gender_id"] {
        kinds.push_str(&opt(
            k,
            &kind_label(f, k),
            filter.kind.as_deref() == Some(k),
        ));
    }
    format!(
        "<form method=\"get\" action=\"/items\" class=\"filters\">\
         <label>{}<select name=\"community\" id=\"f-community\" class=\"autosubmit\">{comm}</select></label>\
         <label>{}<select name=\"kind\" id=\"f-kind\" class=\"autosubmit\">{kinds}</select></label>\
         <button>{}</button></form>",
        f.t("community"),
        f.t("kind"),
        f.t("filter")
    )
}

/// Everything the item page shows.
pub struct ItemView<'a> {
    pub scope: &'a Scope,
    pub explanation: Option<Explanation>,
    pub golden: Option<PersonFields>,
    pub decisions: Vec<DecisionRow>,
    /// The record whose values are shown in full (this response only).
    pub revealed: Option<i64>,
    /// A decision just recorded on this item.
    pub decided: Option<i64>,
    /// The next open item in the reviewer's queue.
    pub next: Option<i64>,
}

pub fn item(f: &Frame<'_>, v: &ItemView<'_>) -> String {
    let s = v.scope;
    let it = &s.item;
    let mut b = String::new();
    let _ = write!(
        b,
        "<p class=\"crumbs\"><a href=\"/items\">← {}</a></p>\
         <h1>{} #{} <span class=\"badge {}\" data-k=\"state\">{}</span></h1>\
         <p class=\"meta\">{} {} · {} {}{}{}</p>",
        f.t("back"),
        esc(&kind_label(f, &it.kind)),
        it.id,
        esc(&it.state),
        esc(&state_label(f, &it.state)),
        f.t("created"),
        esc(&f.time(&it.created_at)),
        f.t("community"),
        esc(s.community().unwrap_or("—")),
        it.field
            .as_deref()
            .map(|x| format!(
                " · {} {}",
                f.t("conflict_field"),
                esc(f.t(&format!("f_{x}")))
            ))
            .unwrap_or_default(),
        it.score
            .map(|x| format!(" · {} {x:.2}", f.t("score_raised")))
            .unwrap_or_default()
    );
    if let Some(d) = v.decided {
        b.push_str(&decided_notice(f, d, v.next));
    }
    if let Some(e) = &v.explanation {
        b.push_str(&explanation(f, e));
    }
    b.push_str(&side_by_side(f, v));
    if it.state == "open" {
        b.push_str(&actions(f, s));
    }
    b.push_str(&split_forms(f, s));
    b.push_str(&history(f, &v.decisions));
    layout(f, &format!("{} #{}", f.t("item"), it.id), &b)
}

fn decided_notice(f: &Frame<'_>, d: i64, next: Option<i64>) -> String {
    let next = next
        .map(|n| {
            format!(
                " <a class=\"button\" id=\"next-item\" href=\"/items/{n}\">{} →</a>",
                f.t("next")
            )
        })
        .unwrap_or_default();
    format!(
        "<section class=\"notice\" data-k=\"decided\">{} #{d}. {}{next}\
         <form method=\"post\" action=\"/decisions/{d}/undo\" class=\"inline\">{}\
         <button class=\"secondary\" id=\"undo-{d}\">{}</button></form></section>",
        f.t("decided"),
        f.t("decided_note"),
        f.csrf(),
        f.t("undo")
    )
}

fn explanation(f: &Frame<'_>, e: &Explanation) -> String {
    let mut b = format!(
        "<section class=\"card\" id=\"explain\"><h2>{}</h2><div class=\"scroll\"><table class=\"explain\"><thead><tr><th>{}</th><th>{}</th><th class=\"num\">{}</th></tr></thead><tbody>",
        f.t("comparisons"),
        f.t("comparison"),
        f.t("outcome"),
        f.t("weight")
    );
    for c in &e.comparisons {
        let class = if c.weight > 0.0 {
            "agree"
        } else if c.weight < 0.0 {
            "disagree"
        } else {
            "neutral"
        };
        let _ = write!(
            b,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td class=\"num\">{:+.2}</td></tr>",
            esc(&matcher_word(f.lang, &c.feature)),
            esc(&matcher_word(f.lang, &c.outcome)),
            c.weight
        );
    }
    let _ = write!(
        b,
        "</tbody><tfoot><tr><th colspan=\"2\">{}</th><th class=\"num\" data-k=\"total\">{:.2}</th></tr></tfoot></table></div>",
        f.t("total"),
        e.total
    );
    b.push_str(&score_bar(f, e));
    if let Some(v) = &e.veto {
        let _ = write!(
            b,
            "<p class=\"veto\" data-k=\"veto\">{}: {}</p>",
            f.t("veto"),
            esc(&matcher_word(f.lang, v))
        );
    }
    b.push_str("</section>");
    b
}

/// The score on a scale with both thresholds marked (widths are classes: no inline style).
fn score_bar(f: &Frame<'_>, e: &Explanation) -> String {
    let top = e.link_threshold.max(e.total).max(1.0);
    let pct = |x: f64| ((x.max(0.0) / top) * 20.0).round() as i64 * 5;
    format!(
        "<div class=\"bar\" aria-hidden=\"true\"><div class=\"fill w{}\"></div><div class=\"mark review at{}\"></div><div class=\"mark link at{}\"></div></div>\
         <p class=\"legend\">{} <b>{:.2}</b> · {} {:.2} · {} {:.2}</p>",
        pct(e.total),
        pct(e.review_threshold),
        pct(e.link_threshold),
        f.t("score"),
        e.total,
        f.t("review_threshold"),
        e.review_threshold,
        f.t("link_threshold"),
        e.link_threshold
    )
}

const FIELDS: [&str; 7] = [
    "name",
    "gender",
    "birth_date",
    "id_number",
    "phone",
    "address",
    "community",
];

/// A value as shown: masked unless revealed.
fn shown(f: &Frame<'_>, field: &str, value: &str, revealed: bool) -> String {
    if field == "gender" {
        return match value {
            "1" => f.t("male").to_string(),
            "2" => f.t("female").to_string(),
            other => other.to_string(),
        };
    }
    if revealed || field == "community" {
        return value.to_string();
    }
    match field {
        "birth_date" => value
            .get(..4)
            .map(|y| format!("{y}-**-**"))
            .unwrap_or_else(|| "****".into()),
        _ => crate::mask::field(field, value),
    }
}

fn side_by_side(f: &Frame<'_>, v: &ItemView<'_>) -> String {
    let s = v.scope;
    let mut cols: Vec<(String, &RecordView)> = Vec::new();
    if let Some(r) = &s.record {
        cols.push((f.t("this_record").to_string(), r));
    }
    let cand = match (s.item.kind.as_str(), s.person) {
        ("match", Some(p)) => format!("{} {}", f.t("candidate"), person_key(p)),
        (_, Some(p)) => format!("{} {}", f.t("resident"), person_key(p)),
        _ => String::new(),
    };
    for r in &s.person_records {
        cols.push((cand.clone(), r));
    }
    let mut b = format!(
        "<section class=\"card\" id=\"records\"><h2>{}</h2><p class=\"note\">{}</p>",
        f.t("side_by_side"),
        if v.revealed.is_some() {
            f.t("revealed_note")
        } else {
            f.t("masked_note")
        }
    );
    b.push_str(&records_table(f, v, &cols, true));
    b.push_str("</section>");
    if !s.own_others.is_empty() {
        let own = s.own_person.map(person_key).unwrap_or_default();
        let _ = write!(
            b,
            "<section class=\"card\" id=\"own-records\"><h2>{}</h2>",
            esc(&format!("{} {}{}", f.t("resident"), own, f.t("records_of")))
        );
        let own_cols: Vec<(String, &RecordView)> = s
            .own_others
            .iter()
            .map(|r| (format!("{} {own}", f.t("resident")), r))
            .collect();
        b.push_str(&records_table(f, v, &own_cols, false));
        b.push_str("</section>");
    }
    b
}

/// Records as columns, fields as rows; a value differing from the first column's is marked.
fn records_table(
    f: &Frame<'_>,
    v: &ItemView<'_>,
    cols: &[(String, &RecordView)],
    with_golden: bool,
) -> String {
    let golden = if with_golden { v.golden.as_ref() } else { None };
    let conflict_field = v.scope.item.field.as_deref();
    let mut b = String::from("<div class=\"scroll\"><table class=\"records\"><thead><tr><th></th>");
    if golden.is_some() {
        let _ = write!(b, "<th class=\"golden\">{}</th>", f.t("golden"));
    }
    for (label, r) in cols {
        let reveal = if v.revealed == Some(r.id) {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/items/{}/reveal\" class=\"inline\">{}<input type=\"hidden\" name=\"record\" value=\"{}\"><button class=\"link reveal\" id=\"reveal-{}\">{}</button></form>",
                v.scope.item.id,
                f.csrf(),
                r.id,
                r.id,
                f.t("reveal")
            )
        };
        let _ = write!(
            b,
            "<th data-record=\"{}\"><div class=\"role\">{}</div>{reveal}</th>",
            r.id,
            esc(label)
        );
    }
    b.push_str("</tr></thead><tbody>");
    let meta_row = |label: &str, get: &dyn Fn(&RecordView) -> String| {
        let mut row = format!("<tr class=\"meta\"><th>{}</th>", esc(label));
        if golden.is_some() {
            row.push_str("<td class=\"golden\"></td>");
        }
        for (_, r) in cols {
            let _ = write!(row, "<td>{}</td>", esc(&get(r)));
        }
        row.push_str("</tr>");
        row
    };
    b.push_str(&meta_row(f.t("source"), &|r| r.source.clone()));
    b.push_str(&meta_row(f.t("record"), &|r| {
        format!("{}/{} #{}", r.stream, r.key, r.id)
    }));
    b.push_str(&meta_row(f.t("updated"), &|r| f.time(&r.updated)));
    for field in FIELDS {
        let first = cols.first().and_then(|(_, r)| r.fields.get(field));
        let class = if Some(field) == conflict_field {
            " class=\"conflict\""
        } else {
            ""
        };
        let _ = write!(b, "<tr{class}><th>{}</th>", f.t(&format!("f_{field}")));
        if let Some(g) = golden {
            let gv = g
                .get(field)
                .map(|x| shown(f, field, &x, false))
                .unwrap_or_default();
            let _ = write!(b, "<td class=\"golden\">{}</td>", esc(&gv));
        }
        for (i, (_, r)) in cols.iter().enumerate() {
            let value = r.fields.get(field);
            let mark = match (&value, &first) {
                (Some(a), Some(b)) if i > 0 && a != b => " class=\"diff\"",
                (Some(_), Some(_)) if i > 0 => " class=\"same\"",
                _ => "",
            };
            let text = value
                .as_deref()
                .map(|x| shown(f, field, x, v.revealed == Some(r.id)))
                .unwrap_or_else(|| "—".into());
            let _ = write!(
                b,
                "<td{mark} data-field=\"{field}\" data-record=\"{}\">{}</td>",
                r.id,
                esc(&text)
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table></div>");
    b
}

fn actions(f: &Frame<'_>, s: &Scope) -> String {
    let kind = s.item.kind.as_str();
    let (yes, no) = match kind {
        "match" => ("accept_match", "reject_match"),
        "conflict" => ("accept_conflict", "reject_conflict"),
        _ => ("accept_gender_id", "reject_gender_id"),
    };
    let merge = match (kind, s.own_person, s.person) {
        ("match", Some(own), Some(cand)) if own != cand && !s.own_others.is_empty() => format!(
            "<button name=\"action\" value=\"merge\" class=\"secondary\" id=\"merge\" title=\"{}\">{}</button>",
            f.t("merge_note"),
            f.t("merge")
        ),
        _ => String::new(),
    };
    format!(
        "<section class=\"card\" id=\"actions\"><h2>{}</h2>\
         <form method=\"post\" action=\"/items/{}/decide\" class=\"stack decide\">{}\
         <label>{}<textarea name=\"reason\" id=\"reason\" rows=\"2\" maxlength=\"500\"></textarea></label>\
         <div class=\"buttons\">\
         <button name=\"action\" value=\"accept\" class=\"primary\" id=\"accept\">{}</button>\
         <button name=\"action\" value=\"reject\" class=\"danger\" id=\"reject\">{}</button>\
         {merge}\
         <button name=\"action\" value=\"skip\" class=\"secondary\" id=\"skip\">{}</button>\
         </div></form></section>",
        f.t("decide"),
        s.item.id,
        f.csrf(),
        f.t("reason"),
        f.t(yes),
        f.t(no),
        f.t("skip"),
    )
}

/// One split form per resident shown with more than one record.
fn split_forms(f: &Frame<'_>, s: &Scope) -> String {
    let mut groups: Vec<(i64, Vec<&RecordView>)> = Vec::new();
    if let Some(p) = s.person {
        let mut recs: Vec<&RecordView> = s.person_records.iter().collect();
        if s.record.as_ref().and_then(|r| r.person_id) == Some(p) {
            recs.extend(s.record.as_ref());
        }
        groups.push((p, recs));
    }
    if let Some(own) = s.own_person.filter(|o| Some(*o) != s.person) {
        let mut recs: Vec<&RecordView> = s.record.iter().collect();
        recs.extend(&s.own_others);
        groups.push((own, recs));
    }
    let mut b = String::new();
    for (pid, recs) in groups.into_iter().filter(|(_, r)| r.len() > 1) {
        let _ = write!(
            b,
            "<section class=\"card split\"><h2>{} {}</h2><p class=\"note\">{}</p>\
             <form method=\"post\" action=\"/items/{}/split\" class=\"stack\">{}<input type=\"hidden\" name=\"person\" value=\"{pid}\">",
            f.t("resident"),
            person_key(pid),
            f.t("split_note"),
            s.item.id,
            f.csrf()
        );
        for r in recs {
            let name = r
                .fields
                .name
                .as_deref()
                .map(crate::mask::name)
                .unwrap_or_default();
            let _ = write!(
                b,
                "<label class=\"check\"><input type=\"checkbox\" name=\"record\" value=\"{}\"> {} · {}/{} · {}</label>",
                r.id,
                esc(&r.source),
                esc(&r.stream),
                esc(&r.key),
                esc(&name)
            );
        }
        let _ = write!(
            b,
            "<label>{}<input name=\"reason\" maxlength=\"500\"></label>\
             <div class=\"buttons\"><button class=\"secondary split-button\" id=\"split-{pid}\">{}</button></div></form></section>",
            f.t("reason"),
            f.t("split")
        );
    }
    b
}

fn action_label(f: &Frame<'_>, action: &str) -> String {
    f.t(&format!("a_{action}")).to_string()
}

fn decisions_table(f: &Frame<'_>, rows: &[DecisionRow], with_item: bool) -> String {
    let mut b = format!(
        "<div class=\"scroll\"><table class=\"decisions\"><thead><tr><th>#</th>{}<th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
        if with_item { format!("<th>{}</th>", f.t("item")) } else { String::new() },
        f.t("action"),
        f.t("by"),
        f.t("at"),
        f.t("reason"),
    );
    for d in rows {
        let item = match (with_item, d.item) {
            (true, Some(i)) => format!("<td><a href=\"/items/{i}\">#{i}</a></td>"),
            (true, None) => "<td></td>".into(),
            _ => String::new(),
        };
        let undo = match d.undone_by {
            Some(u) => format!("<span class=\"tag\">{} #{u}</span>", f.t("undone")),
            None if d.action != "undo" => format!(
                "<form method=\"post\" action=\"/decisions/{}/undo\" class=\"inline\">{}<button class=\"link\" id=\"undo-{}\">{}</button></form>",
                d.id,
                f.csrf(),
                d.id,
                f.t("undo")
            ),
            None => String::new(),
        };
        let _ = write!(
            b,
            "<tr data-decision=\"{id}\"><td>{id}</td>{item}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{undo}</td></tr>",
            esc(&action_label(f, &d.action)),
            esc(&d.by),
            esc(&f.time(&d.at)),
            esc(d.reason.as_deref().unwrap_or("")),
            id = d.id,
        );
    }
    b.push_str("</tbody></table></div>");
    b
}

fn history(f: &Frame<'_>, rows: &[DecisionRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<section class=\"card\" id=\"history\"><h2>{}</h2>{}</section>",
        f.t("history"),
        decisions_table(f, rows, false)
    )
}

pub fn decisions(f: &Frame<'_>, rows: &[DecisionRow]) -> String {
    let body = format!(
        "<h1>{}</h1><section class=\"card\">{}</section>",
        f.t("decisions"),
        decisions_table(f, rows, true)
    );
    layout(f, f.t("decisions"), &body)
}
