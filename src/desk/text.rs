//! The desk's words, Chinese first, English beside: one table, looked up by key.

/// The page language (a cookie; Chinese unless the reviewer chose English).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }
}

/// (key, Chinese, English).
const TEXT: &[(&str, &str, &str)] = &[
    ("app", "居民信息复核台", "Resident review desk"),
    ("queue", "待复核", "Queue"),
    ("decisions", "决定记录", "Decisions"),
    ("logout", "退出", "Sign out"),
    ("login", "登录", "Sign in"),
    ("name", "用户名", "Name"),
    ("password", "密码", "Password"),
    ("password2", "再次输入密码", "Password again"),
    ("set_password", "设置密码并登录", "Set password and sign in"),
    ("login_failed", "用户名或密码不正确，或账号因多次失败已暂时锁定。", "Wrong name or password, or the account is locked for a while after repeated failures."),
    ("kind_match", "疑似同一人", "Possible match"),
    ("kind_conflict", "字段冲突", "Field conflict"),
    ("kind_gender_id", "性别与身份证号不符", "Gender vs ID number"),
    ("all", "全部", "All"),
    ("community", "社区", "Community"),
    ("kind", "类型", "Kind"),
    ("filter", "筛选", "Filter"),
    ("created", "提出时间", "Raised"),
    ("score", "得分", "Score"),
    ("score_raised", "提出时得分", "Score when raised"),
    ("open_items", "条待复核", "open items"),
    ("none_open", "没有待复核事项。", "Nothing to review."),
    ("skipped", "我已跳过", "skipped by me"),
    ("item", "复核事项", "Review item"),
    ("state_open", "待处理", "open"),
    ("state_accepted", "已接受", "accepted"),
    ("state_rejected", "已拒绝", "rejected"),
    ("state_superseded", "已失效", "superseded"),
    ("field", "字段", "Field"),
    ("source", "来源系统", "Source system"),
    ("record", "记录", "Record"),
    ("updated", "更新时间", "Updated"),
    ("f_name", "姓名", "Name"),
    ("f_gender", "性别", "Gender"),
    ("f_birth_date", "出生日期", "Birth date"),
    ("f_id_number", "身份证号", "ID number"),
    ("f_phone", "电话", "Phone"),
    ("f_address", "地址", "Address"),
    ("f_community", "社区", "Community"),
    ("this_record", "本条记录", "This record"),
    ("candidate", "候选居民", "Candidate"),
    ("resident", "居民", "Resident"),
    ("records_of", "的记录", "'s records"),
    ("side_by_side", "记录对照", "Records side by side"),
    ("comparisons", "比对结果", "How the records compare"),
    ("comparison", "比对项", "Comparison"),
    ("outcome", "结果", "Outcome"),
    ("weight", "权重", "Weight"),
    ("total", "合计", "Total"),
    ("review_threshold", "复核阈值", "Review threshold"),
    ("link_threshold", "自动关联阈值", "Link threshold"),
    ("veto", "不能自动关联", "No automatic link"),
    ("no_explanation", "该记录没有可比对的信息。", "This record has nothing to compare."),
    ("reveal", "显示完整信息", "Show full values"),
    ("revealed_note", "已显示本条记录的完整信息，此次查看已记入审计日志。", "This record's full values are shown; this view is in the audit trail."),
    ("masked_note", "个人信息默认部分隐藏；需要时可显示某一条记录的完整信息（会记入审计日志）。", "Personal data is partly hidden; you may show one record's full values (the view is logged in the audit trail)."),
    ("reason", "理由（请勿填写身份证号或电话）", "Reason (no ID numbers or phones)"),
    ("decide", "处理", "Decide"),
    ("accept_match", "是同一人，关联", "Same person: link"),
    ("reject_match", "不是同一人，保持分开", "Not the same: keep apart"),
    ("accept_conflict", "采用本条记录的值", "Take this record's value"),
    ("reject_conflict", "保留现有值", "Keep the current value"),
    ("accept_gender_id", "确认知晓", "Acknowledge"),
    ("reject_gender_id", "忽略", "Dismiss"),
    ("skip", "不确定，跳过", "Not sure: skip"),
    ("merge", "合并两位居民", "Merge the two residents"),
    ("merge_note", "把本条记录所属居民的全部记录并入候选居民", "Fold all records of this record's resident into the candidate"),
    ("split", "拆分选中的记录为新居民", "Split the selected records into a new resident"),
    ("split_note", "如果某位居民的记录其实属于不同的人，选中要分出去的记录：", "If a resident's records belong to different people, select the ones to move out:"),
    ("history", "处理记录", "History"),
    ("undo", "撤销", "Undo"),
    ("undone", "已撤销，见决定", "undone by decision"),
    ("decided", "已记录决定", "Decision recorded"),
    ("decided_note", "已生效，并会在之后每次对账中保持；如有误可撤销。", "It is in effect and every later reconcile keeps it; undo it if it was a mistake."),
    ("next", "下一条", "Next item"),
    ("back", "返回列表", "Back to the queue"),
    ("by", "处理人", "By"),
    ("at", "时间", "When"),
    ("action", "操作", "Action"),
    ("a_accept", "接受", "accept"),
    ("a_reject", "拒绝", "reject"),
    ("a_skip", "跳过", "skip"),
    ("a_merge", "合并", "merge"),
    ("a_split", "拆分", "split"),
    ("a_undo", "撤销", "undo"),
    ("csrf_refused", "表单已失效（缺少或错误的安全令牌），操作未执行。请返回页面刷新后重试。", "The form is stale (missing or wrong security token); nothing was done. Go back, reload and try again."),
    ("not_found", "没有该事项，或您无权查看。", "No such item, or not yours to see."),
    ("refused", "操作未执行", "Not done"),
    ("error", "出错了", "Something went wrong"),
    ("welcome", "欢迎，请设置您的密码", "Welcome: set your password"),
    ("password_rules", "至少 10 个字符", "at least 10 characters"),
    ("password_mismatch", "两次输入的密码不一致。", "The two passwords differ."),
    ("password_short", "密码太短（至少 10 个字符）。", "The password is too short (at least 10 characters)."),
    ("bad_link", "该登录链接无效、已使用或已过期，请联系管理员重新生成。", "This sign-in link is unknown, used or expired; ask the operator for a new one."),
    ("all_communities", "全部社区", "all communities"),
    ("male", "男", "male"),
    ("female", "女", "female"),
    ("prev_page", "上一页", "Previous"),
    ("next_page", "下一页", "Next"),
    ("golden", "当前值", "Current value"),
    ("conflict_field", "冲突字段", "Field in conflict"),
    ("lang_switch", "English", "中文"),
    ("item_decided", "该事项已处理", "This item was decided"),
    ("not_shown_yet", "无", "none"),
    ("nothing_else", "该居民没有其他记录。", "The resident has no other records."),
];

/// The text of `key` in `lang` (`?` when missing, which debug builds refuse).
pub fn t(lang: Lang, key: &str) -> &'static str {
    debug_assert!(
        TEXT.iter().any(|(k, _, _)| *k == key),
        "desk text key {key:?} is missing"
    );
    TEXT.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, zh, en)| match lang {
            Lang::Zh => *zh,
            Lang::En => *en,
        })
        .unwrap_or("?")
}

/// A matcher comparison or outcome in `lang` (unknown words pass unchanged).
pub fn matcher_word(lang: Lang, word: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("name", "姓名"),
        ("phone", "电话"),
        ("birth_date", "出生日期"),
        ("gender", "性别"),
        ("address", "地址"),
        ("exact", "完全一致"),
        ("pinyin", "拼音相同"),
        ("swapped order", "姓名顺序颠倒"),
        ("one edit", "相差一个字"),
        ("look-alike", "形近字"),
        ("near sound", "读音相近"),
        ("masked", "姓名部分隐去"),
        ("family", "同住家人的电话"),
        ("one part off", "年月日有一项不同"),
        ("different", "不同"),
        ("current", "与当前电话相同"),
        ("earlier", "与曾用电话相同"),
        ("household", "家庭共用电话"),
        ("earlier household", "曾用的家庭共用电话"),
        ("equal", "相同"),
        ("same", "相同"),
        ("day/month swapped", "日月颠倒"),
        ("same room", "同一房间"),
        ("same building", "同一楼栋"),
        ("same community", "同一社区"),
        ("a reviewer rejected this pair", "复核人员曾判定不是同一人"),
        ("different ID numbers", "身份证号不同"),
        ("names differ", "姓名不同"),
        (
            "names one character apart and the birth date or gender differs: a sibling",
            "姓名相差一个字且出生日期或性别不同：应为兄弟姐妹",
        ),
        (
            "two of phone, birth date and gender differ",
            "电话、出生日期、性别中有两项不同",
        ),
        (
            "only the name and the neighbourhood agree, and the phone, birth date or gender differs",
            "仅姓名和所在社区/楼栋相同，且电话、出生日期或性别不同",
        ),
        (
            "no phone or address of the resident confirms it",
            "没有该居民的电话或地址可以印证",
        ),
        (
            "names one character apart that sound nearly alike: a typo, or a sibling or twin",
            "姓名相差一个字且读音相近：可能是笔误，也可能是兄弟姐妹或双胞胎",
        ),
        (
            "names one character apart that neither sound nor look alike: a twin's or sibling's name",
            "姓名相差一个字，字音字形都不相近：应为双胞胎或兄弟姐妹",
        ),
        (
            "one name is masked, and not all else is the resident's own",
            "一方姓名有隐去或无法显示的字，且其他信息不全是该居民本人的",
        ),
        (
            "one name has a character the other lacks, and not all else is the resident's own",
            "一方姓名多一个或少一个字，且其他信息不全是该居民本人的",
        ),
        (
            "household phone with a different birth date",
            "家庭共用电话且出生日期不同",
        ),
    ];
    match lang {
        Lang::En => word.replace('_', " "),
        Lang::Zh => WORDS
            .iter()
            .find(|(w, _)| *w == word)
            .map(|(_, z)| z.to_string())
            .unwrap_or_else(|| word.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_once() {
        let mut keys: Vec<&str> = TEXT.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len(), "a key appears twice");
        for (k, zh, en) in TEXT {
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
        }
    }
}
