//! Look-alike characters (形近字): characters that differ by a stroke or a component and are
//! misread from handwriting, a scanned form or a handwriting pad, or picked by a shape-based
//! input method (五笔) — 玉/王, 未/末, 己/已/巳, 戊/戌/戍. A name one such character off its
//! resident's name is a typo far more often than another person's name: parents do not name
//! twins 子玉 and 子王. A substitution between characters that neither sound nor look alike
//! (张子涵 / 张子轩) is what siblings' and twins' names are.
//!
//! The table is written for this project from the classic look-alike sets taught in Chinese
//! schools and the characters frequent in names and surnames (陈/阵, 沈/沉, 余/佘, 袁/衰,
//! 宋/宗 …); it is not derived from any third-party list. Each group is a set of characters
//! any two of which are look-alikes; a character may be in several groups (大 with 太 and 犬,
//! and with 天 and 夫), so the relation need not be transitive. Pairs of characters that are
//! both common in given names and could name twins (芳/芬, 思/恩, 磊/晶) are left out: a
//! look-alike links with no person asked, so it must not be what twins' names are. Homophones need no entry
//! (the pinyin level finds them). [`shape_variants`] turns a name into keys that two names
//! share exactly when they are one look-alike substitution apart, so the comparison is an
//! equality of blinded keys like every other.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Groups of mutually look-alike characters (simplified forms).
const GROUPS: &[&str] = &[
    // Strokes added or moved.
    "王玉主",
    "王壬",
    "土士",
    "己已巳",
    "未末",
    "日曰",
    "人入八",
    "刀力",
    "千干于",
    "午牛",
    "免兔",
    "戊戌戍戎",
    "大太犬",
    "天夭夫",
    "大天",
    "子孑孓",
    "了子",
    "木本术",
    "甲由申田",
    "白自百",
    "贝见",
    "儿几",
    "九丸",
    "厂广",
    "凡几",
    "方万",
    "勺匀",
    "元无",
    "义叉",
    "心必",
    "永水",
    "目且",
    "爪瓜",
    "斤斥",
    "今令",
    "鸟乌",
    "兵乒乓",
    "仓仑",
    "丹舟",
    "平乎",
    "毛手",
    "石右",
    "史吏",
    "文丈",
    "武式",
    "夏复",
    "秀禿",
    "春舂",
    "良艮",
    "亨享",
    "壶壸",
    "汩汨",
    "吉告",
    "雨两",
    "金全",
    "熊能",
    "折拆析",
    "冶治",
    // The same component with another one beside, above or below it.
    "宇字",
    "佳住往",
    "国围困固",
    "华毕",
    "雪雷",
    "波坡披",
    "梅海",
    "英荚",
    "晶品",
    "明朋",
    "晴睛",
    "陈阵",
    "沈沉",
    "余佘",
    "袁哀衷衰",
    "宋宗",
    "贾贯",
    "傅博",
    "薛薜",
    "戴载",
    "汪注",
    "江汪",
    "任仕",
    "姜美",
    "范苑",
    "宛苑",
    "尹伊",
    "贺货贷",
    "赖懒",
    "龚袭",
    "康庚",
    "秦奏泰春",
    "孟盂",
    "钱线",
    "杜社",
    "董童",
    "军车",
    "超起",
    "彬杉",
    "帅师",
    "志忘",
    "建延廷",
    "鸣呜",
    "晓晚",
    "昕听",
    "彤形",
    "柏拍",
    "阳阴",
    "嘉喜",
    "泽译",
    "瑞端",
    "润涧",
    "远运",
    "禄绿",
    "庆厌",
    "贵责",
    "荣劳",
    "昌冒",
    "素索",
    "枝技",
    "池他地",
    "琛深",
    "颂硕",
    "若苦",
    "倍陪",
    "便使",
    "代伐",
    "休体",
    "侍待",
    "齐斋",
    "宜宣",
    "官宫",
    "容客",
    "寒塞",
    "察祭",
    "微徽",
    "律津",
    "徐涂",
    "御卸",
    "怡恰",
    "崇祟",
    "幻幼",
    "狐孤",
    "栗粟",
    "赢羸",
    "浙淅",
    "籍藉",
    "钓钩",
    "沐沭",
    "杳杏",
    "耍要",
    "肓盲",
    "祗祇",
    "亳毫",
    "灸炙",
    "刺剌",
    "李季",
    "秀季",
    "赵越",
    "吴昊",
    "朱未",
    "马鸟",
    "唐庸",
    "曹曾",
    "吕品",
    "卢户",
    "蔡察",
    "郝赫",
    "常党",
    "洋详",
    "东车",
    "成戌",
    "礼扎",
    "才寸",
    "光先",
    "学觉",
    "云去",
    "民氏",
    "少小",
    "孝考老",
    "彦产",
    "翼冀",
    "雁鹰",
    "巧功",
    "爱受",
    "洁浩",
    "馨磬",
    "祥样",
    "拔拨",
    "徒徙",
    "茶荼",
    "杨扬汤",
    "冲仲",
    "俊梭",
    "琴琶",
    "倩债",
    "红江",
    "涛祷",
    "静睁",
];

/// The groups each character is in (indexes into [`GROUPS`]).
fn groups_of() -> &'static HashMap<char, Vec<u16>> {
    static G: OnceLock<HashMap<char, Vec<u16>>> = OnceLock::new();
    G.get_or_init(|| {
        let mut map: HashMap<char, Vec<u16>> = HashMap::new();
        for (g, chars) in GROUPS.iter().enumerate() {
            for c in chars.chars() {
                let e = map.entry(c).or_default();
                let g = u16::try_from(g).unwrap_or(u16::MAX);
                if !e.contains(&g) {
                    e.push(g);
                }
            }
        }
        map
    })
}

/// Keys of a folded name (`names::fold`) that another name shares exactly when the two are
/// one look-alike substitution apart: per position whose character is in a group, once per
/// group, the name with that character replaced by a marker of the group. Empty when no
/// character of the name is in the table.
pub fn shape_variants(folded: &str) -> Vec<String> {
    let chars: Vec<char> = folded.chars().collect();
    let mut out = Vec::new();
    for (i, c) in chars.iter().enumerate() {
        let Some(gs) = groups_of().get(c) else {
            continue;
        };
        for g in gs {
            let mut v: String = chars[..i].iter().collect();
            // Control characters never survive normalisation: the marker cannot be a name's.
            v.push('\u{1}');
            v.push_str(&g.to_string());
            v.push('\u{1}');
            v.extend(chars[i + 1..].iter());
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(a: &str, b: &str) -> bool {
        let va = shape_variants(a);
        shape_variants(b).iter().any(|v| va.contains(v))
    }

    #[test]
    fn one_look_alike_substitution_shares_a_variant() {
        assert!(share("李玉兰", "李王兰"));
        assert!(share("陈明", "阵明"));
        assert!(share("张太", "张犬"));
        assert!(share("张大", "张天"));
        // Not transitive across groups: 太 and 天 are not listed together.
        assert!(!share("张太", "张天"));
        // Two substitutions, a plain substitution, the same name: no shared variant.
        assert!(!share("李玉兰", "李王三"));
        assert!(!share("张子涵", "张子轩"));
        assert!(shape_variants("张子涵").is_empty() || !share("张子涵", "张子涵x"));
        assert!(share("张己", "张巳"));
    }

    #[test]
    fn groups_are_han_characters_of_gbk_with_two_or_more_distinct_members() {
        for g in GROUPS {
            let chars: Vec<char> = g.chars().collect();
            let mut distinct = chars.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), chars.len(), "{g}: a character twice");
            assert!(chars.len() >= 2, "{g}");
            for c in chars {
                assert!(('\u{4E00}'..='\u{9FFF}').contains(&c), "{g}: {c}");
                let (_, _, bad) = encoding_rs::GBK.encode(&c.to_string());
                assert!(!bad, "{g}: {c} is not in GBK");
            }
        }
        let mut sorted: Vec<&str> = GROUPS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), GROUPS.len(), "a group listed twice");
    }
}
