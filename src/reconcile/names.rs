//! Name keys for matching Chinese names.
//!
//! - [`fold`]: the name as compared "exactly": traditional characters folded to simplified
//!   (a compact embedded table of the characters that occur in names), every middle-dot
//!   variant and whitespace removed (`阿卜杜·热合曼` = `阿卜杜•热合曼` = `阿卜杜热合曼`).
//! - [`pinyin_key`]: the folded name read as toneless pinyin syllables (`张伟` = `张玮` =
//!   `zhang wei`), for homophone typos. Characters without a reading stay as they are.

use pinyin::ToPinyin;

/// Traditional → simplified for characters found in names (surnames and common given-name
/// characters).
const TRAD_SIMP: &[(char, char)] = &[
    ('乾', '干'),
    ('亞', '亚'),
    ('偉', '伟'),
    ('傑', '杰'),
    ('傳', '传'),
    ('儀', '仪'),
    ('優', '优'),
    ('兒', '儿'),
    ('凱', '凯'),
    ('劉', '刘'),
    ('勝', '胜'),
    ('勵', '励'),
    ('區', '区'),
    ('華', '华'),
    ('協', '协'),
    ('卻', '却'),
    ('厲', '厉'),
    ('吳', '吴'),
    ('呂', '吕'),
    ('員', '员'),
    ('哲', '哲'),
    ('啓', '启'),
    ('喬', '乔'),
    ('嚴', '严'),
    ('國', '国'),
    ('園', '园'),
    ('圓', '圆'),
    ('團', '团'),
    ('堅', '坚'),
    ('報', '报'),
    ('場', '场'),
    ('壽', '寿'),
    ('夢', '梦'),
    ('奮', '奋'),
    ('媛', '媛'),
    ('婦', '妇'),
    ('嬌', '娇'),
    ('孫', '孙'),
    ('學', '学'),
    ('寧', '宁'),
    ('寶', '宝'),
    ('將', '将'),
    ('尋', '寻'),
    ('岡', '冈'),
    ('嵐', '岚'),
    ('巖', '岩'),
    ('帥', '帅'),
    ('師', '师'),
    ('廣', '广'),
    ('張', '张'),
    ('強', '强'),
    ('彥', '彦'),
    ('徐', '徐'),
    ('從', '从'),
    ('德', '德'),
    ('慶', '庆'),
    ('憲', '宪'),
    ('應', '应'),
    ('懷', '怀'),
    ('戰', '战'),
    ('擁', '拥'),
    ('數', '数'),
    ('斕', '斓'),
    ('於', '于'),
    ('昇', '升'),
    ('曉', '晓'),
    ('曆', '历'),
    ('書', '书'),
    ('東', '东'),
    ('林', '林'),
    ('柵', '栅'),
    ('標', '标'),
    ('樂', '乐'),
    ('樓', '楼'),
    ('樹', '树'),
    ('橋', '桥'),
    ('機', '机'),
    ('權', '权'),
    ('歐', '欧'),
    ('歲', '岁'),
    ('歷', '历'),
    ('氣', '气'),
    ('沈', '沈'),
    ('溫', '温'),
    ('湯', '汤'),
    ('滿', '满'),
    ('漢', '汉'),
    ('潔', '洁'),
    ('潤', '润'),
    ('濤', '涛'),
    ('瀋', '沈'),
    ('為', '为'),
    ('無', '无'),
    ('燕', '燕'),
    ('爾', '尔'),
    ('獻', '献'),
    ('玲', '玲'),
    ('珍', '珍'),
    ('瑋', '玮'),
    ('環', '环'),
    ('瓊', '琼'),
    ('產', '产'),
    ('畢', '毕'),
    ('發', '发'),
    ('盧', '卢'),
    ('碩', '硕'),
    ('禮', '礼'),
    ('禎', '祯'),
    ('秀', '秀'),
    ('穎', '颖'),
    ('競', '竞'),
    ('筆', '笔'),
    ('範', '范'),
    ('紅', '红'),
    ('純', '纯'),
    ('紹', '绍'),
    ('經', '经'),
    ('維', '维'),
    ('綱', '纲'),
    ('網', '网'),
    ('綺', '绮'),
    ('緒', '绪'),
    ('練', '练'),
    ('縣', '县'),
    ('繼', '继'),
    ('羅', '罗'),
    ('義', '义'),
    ('聖', '圣'),
    ('聰', '聪'),
    ('聲', '声'),
    ('肅', '肃'),
    ('興', '兴'),
    ('舉', '举'),
    ('艷', '艳'),
    ('芳', '芳'),
    ('莊', '庄'),
    ('萬', '万'),
    ('葉', '叶'),
    ('蔣', '蒋'),
    ('蕭', '萧'),
    ('蘇', '苏'),
    ('蘭', '兰'),
    ('衛', '卫'),
    ('許', '许'),
    ('詩', '诗'),
    ('誠', '诚'),
    ('課', '课'),
    ('調', '调'),
    ('謝', '谢'),
    ('譚', '谭'),
    ('豐', '丰'),
    ('貝', '贝'),
    ('貴', '贵'),
    ('賀', '贺'),
    ('賢', '贤'),
    ('賴', '赖'),
    ('趙', '赵'),
    ('軍', '军'),
    ('輝', '辉'),
    ('農', '农'),
    ('運', '运'),
    ('達', '达'),
    ('遠', '远'),
    ('還', '还'),
    ('邁', '迈'),
    ('鄧', '邓'),
    ('鄭', '郑'),
    ('鄒', '邹'),
    ('醫', '医'),
    ('釗', '钊'),
    ('鈞', '钧'),
    ('鈺', '钰'),
    ('鋒', '锋'),
    ('錢', '钱'),
    ('錦', '锦'),
    ('鍾', '钟'),
    ('鎮', '镇'),
    ('鏡', '镜'),
    ('鐘', '钟'),
    ('鐵', '铁'),
    ('長', '长'),
    ('門', '门'),
    ('閆', '闫'),
    ('閔', '闵'),
    ('閻', '阎'),
    ('關', '关'),
    ('陳', '陈'),
    ('陸', '陆'),
    ('陽', '阳'),
    ('隆', '隆'),
    ('雙', '双'),
    ('雲', '云'),
    ('電', '电'),
    ('霞', '霞'),
    ('靈', '灵'),
    ('韋', '韦'),
    ('韓', '韩'),
    ('順', '顺'),
    ('頓', '顿'),
    ('頡', '颉'),
    ('頤', '颐'),
    ('顏', '颜'),
    ('顧', '顾'),
    ('風', '风'),
    ('飛', '飞'),
    ('馬', '马'),
    ('馮', '冯'),
    ('駱', '骆'),
    ('騰', '腾'),
    ('高', '高'),
    ('魏', '魏'),
    ('魯', '鲁'),
    ('鳳', '凤'),
    ('鳴', '鸣'),
    ('鴻', '鸿'),
    ('鵬', '鹏'),
    ('麗', '丽'),
    ('黃', '黄'),
    ('齊', '齐'),
    ('龍', '龙'),
    ('龔', '龚'),
];

fn table() -> &'static std::collections::HashMap<char, char> {
    static T: std::sync::OnceLock<std::collections::HashMap<char, char>> =
        std::sync::OnceLock::new();
    T.get_or_init(|| TRAD_SIMP.iter().copied().filter(|(t, s)| t != s).collect())
}

/// The simplified form of one character (itself when not in the table).
pub fn simplify_char(c: char) -> char {
    table().get(&c).copied().unwrap_or(c)
}

/// True for the middle dot and the characters vendors type for it.
fn is_dot(c: char) -> bool {
    matches!(
        c,
        '\u{00B7}'
            | '\u{30FB}'
            | '\u{FF65}'
            | '\u{2022}'
            | '\u{2027}'
            | '\u{2219}'
            | '\u{22C5}'
            | '\u{0387}'
            | '.'
    )
}

/// The name compared "exactly": simplified characters, no dots, no whitespace.
pub fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| !is_dot(*c) && !c.is_whitespace())
        .map(simplify_char)
        .collect()
}

/// Toneless pinyin of the folded name, syllables joined by spaces.
pub fn pinyin_key(name: &str) -> String {
    let folded = fold(name);
    let mut out = String::with_capacity(folded.len() * 2);
    for (c, py) in folded.chars().zip(folded.as_str().to_pinyin()) {
        if !out.is_empty() {
            out.push(' ');
        }
        match py {
            Some(p) => out.push_str(p.plain()),
            None => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// How two names agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameAgreement {
    Different,
    /// Same toneless pinyin, different characters (a homophone typo).
    Pinyin,
    /// Equal after normalisation and traditional/simplified and middle-dot folding.
    Exact,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_folds_to_simplified() {
        assert_eq!(fold("張偉"), "张伟");
        assert_eq!(fold("陳麗華"), "陈丽华");
        assert_eq!(fold("王芳"), "王芳");
    }

    #[test]
    fn middle_dot_variants_fold_together() {
        assert_eq!(fold("阿卜杜·热合曼"), fold("阿卜杜•热合曼"));
        assert_eq!(fold("阿卜杜・热合曼"), "阿卜杜热合曼");
    }

    #[test]
    fn homophones_share_a_pinyin_key() {
        assert_eq!(pinyin_key("张伟"), "zhang wei");
        assert_eq!(pinyin_key("张伟"), pinyin_key("张玮"));
        assert_eq!(pinyin_key("張偉"), pinyin_key("张伟"));
        assert_ne!(pinyin_key("张伟"), pinyin_key("张强"));
    }
}
