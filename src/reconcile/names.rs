//! Name keys for matching Chinese names.
//!
//! - [`fold`]: the name as compared "exactly": traditional characters folded to simplified
//!   (a compact embedded table of the characters that occur in names), every middle-dot
//!   variant and whitespace removed (`阿卜杜·热合曼` = `阿卜杜•热合曼` = `阿卜杜热合曼`).
//! - [`sound_keys`] (first): the folded name read as toneless pinyin, letters only (`张伟` = `张玮` =
//!   `Zhang Wei` = `ZHANG-WEI` = `zhangwei`): homophone typos and names typed in pinyin
//!   letters. Characters without a reading stay as they are.
//! - [`sound_keys`] (second): the same syllables in sorted order (`Wei Zhang` = `张伟` = `wei zhang`):
//!   the given name written before the surname. Letters are split into syllables by the
//!   longest valid pinyin syllable first (the syllables are read off the `pinyin` crate).
//! - [`edit_variants`]: the name with one character left out, once per character: two names
//!   one substitution, insertion or deletion apart share a variant (or one's variant is the
//!   other's name), so "one edit" is found by equality of blinded keys alone.

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

/// Toneless pinyin syllables of a name in written order: one per Chinese character, and the
/// letters of every Latin word split into syllables (`Xiao-Wei` → `xiao`, `wei`). Characters
/// with no reading (other scripts, digits) are kept as one-character tokens.
fn syllables(name: &str) -> Vec<String> {
    let folded: String = name
        .chars()
        .filter(|c| !is_dot(*c))
        .map(simplify_char)
        .collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.extend(split_latin(&word.to_ascii_lowercase()));
            word.clear();
        }
    };
    for (c, py) in folded.chars().zip(folded.as_str().to_pinyin()) {
        if c.is_ascii_alphabetic() {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        match py {
            Some(p) => out.push(plain(p.plain())),
            None if c.is_whitespace() || c == '-' || c == '\'' || c == ',' => {}
            None => out.extend(c.to_lowercase().map(String::from)),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Every toneless pinyin syllable the `pinyin` crate knows (read once off the CJK block).
fn pinyin_syllables() -> &'static std::collections::HashSet<String> {
    static S: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        ('\u{4E00}'..='\u{9FFF}')
            .filter_map(|c| c.to_pinyin())
            .map(|p| plain(p.plain()))
            .collect()
    })
}

/// A toneless syllable as typed on a keyboard (`ü` as `v`: 吕 → `lv`).
fn plain(syllable: &str) -> String {
    syllable.replace('ü', "v")
}

/// A lower-case Latin word split into pinyin syllables, longest syllable first; a word that
/// does not split entirely stays one token.
fn split_latin(word: &str) -> Vec<String> {
    let set = pinyin_syllables();
    let mut out = Vec::new();
    let mut rest = word;
    while !rest.is_empty() {
        let take = (1..=rest.len().min(6))
            .rev()
            .find(|&n| rest.is_char_boundary(n) && set.contains(&rest[..n]));
        match take {
            Some(n) => {
                out.push(rest[..n].to_string());
                rest = &rest[n..];
            }
            None => return vec![word.to_string()],
        }
    }
    out
}

/// The sound keys of a name from one reading: its toneless pinyin, letters only, in written
/// order (`张伟` → `zhangwei`), the same syllables sorted (`wei zhang`), and its
/// near-sound key ([`near_sound_key`]).
pub fn sound_keys(name: &str) -> (String, String, String) {
    let mut s = syllables(name);
    let py = s.concat();
    let near = near_sound_key(&s);
    s.sort();
    (py, s.join(" "), near)
}

/// The name's syllables in written order as a southern speaker may hear or type them
/// (the fuzzy-pinyin pairs Chinese input methods offer: `zh`/`z`, `ch`/`c`, `sh`/`s`,
/// `n`/`l`, `r`/`l`, `h`/`f`, `-ng`/`-n` but `-ong`): 刘兰 `liu'lan` = 刘南 `liu'nan`, joined
/// by apostrophes (one value, never split). Empty when the name has no reading.
fn near_sound_key(syllables: &[String]) -> String {
    syllables
        .iter()
        .map(|s| fuzzy(s))
        .collect::<Vec<_>>()
        .join("'")
}

/// One toneless syllable with the fuzzy pairs folded (see [`near_sound_key`]).
fn fuzzy(syllable: &str) -> String {
    let (initial, rest) = match syllable {
        s if s.starts_with("zh") => ("z", &s[2..]),
        s if s.starts_with("ch") => ("c", &s[2..]),
        s if s.starts_with("sh") => ("s", &s[2..]),
        s if s.starts_with('n') && s.len() > 1 && !s.starts_with("ng") => ("l", &s[1..]),
        s if s.starts_with('r') && s.len() > 1 => ("l", &s[1..]),
        s if s.starts_with('h') && s.len() > 1 => ("f", &s[1..]),
        s => ("", s),
    };
    let rest = match rest.strip_suffix("ng") {
        Some(r) if !r.ends_with('o') => format!("{r}n"),
        _ => rest.to_string(),
    };
    format!("{initial}{rest}")
}

/// True for a character that stands for one unknown character: a desensitised export's
/// mask (`王*英`, `王×英`) or what a system without the character wrote for it (`王?英`,
/// `王□英`).
pub fn is_mask(c: char) -> bool {
    matches!(c, '*' | '?' | '×' | '□' | '■' | '○')
}

/// True when a folded name has a masked character and at least one known one.
pub fn is_masked(folded: &str) -> bool {
    folded.chars().any(is_mask) && folded.chars().any(|c| !is_mask(c))
}

/// [`is_masked`] of a name as a record states it: the `name_mask` flag of its match features.
pub fn name_masked(name: Option<&str>) -> bool {
    name.map(fold).is_some_and(|n| is_masked(&n))
}

/// The name's first character and length (`王|3`), what a desensitised export keeps of a
/// name when it masks all but the surname (`王**`): for every name of two characters or more
/// whose first character is known, and for a masked name only when all but its first
/// character are masked (`王*英` is compared through [`edit_variants`]).
pub fn surname_pattern(folded: &str) -> Option<String> {
    let chars: Vec<char> = folded.chars().collect();
    let first = *chars.first()?;
    let rest_masked = chars[1..].iter().all(|c| is_mask(*c));
    let masked = chars.iter().any(|c| is_mask(*c));
    (chars.len() >= 2 && !is_mask(first) && (!masked || rest_masked))
        .then(|| format!("{first}|{}", chars.len()))
}

/// The folded name with one character left out, once per position (distinct, in order);
/// empty for names of fewer than two characters.
pub fn edit_variants(name: &str) -> Vec<String> {
    let chars: Vec<char> = fold(name).chars().collect();
    if chars.len() < 2 {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(chars.len());
    for i in 0..chars.len() {
        let v: String = chars
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| *c)
            .collect();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// How two names agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameAgreement {
    Different,
    /// One character substituted by one that neither sounds nor looks alike (张子涵 /
    /// 张子轩): a sibling's or twin's name far more often than a typo.
    OneEdit,
    /// One character substituted and the names sound nearly alike ([`near_sound_key`]:
    /// 刘兰 / 刘南): a typo of a dialect speaker, or a sibling's name. The level of `OneEdit`.
    NearSound,
    /// One name masked (`王*英`: a desensitised export, or `王?英`: a character the
    /// vendor's character set lacks) and equal to the other in every other character. The
    /// level of `OneEdit`; held unless all else is the resident's own.
    Masked,
    /// One character left out or added (欧阳明月 / 欧阳明: a name field cut short, a
    /// character dropped in typing); siblings' names are rarely one another's but for a
    /// character. The same comparison level as `OneEdit`; the guard holds it less often.
    LeftOut,
    /// The same syllables in another order (given name written first).
    Swapped,
    /// One character substituted by a look-alike (玉/王: `reconcile::lookalike`): a misread
    /// or a shape-based input method's typo. The same comparison level as `Pinyin`.
    LookAlike,
    /// Same toneless pinyin, different characters or letters (a homophone typo, a name
    /// typed in pinyin).
    Pinyin,
    /// Equal after normalisation and traditional/simplified and middle-dot folding.
    Exact,
}

impl NameAgreement {
    /// Names that differ by one character (substituted, added or left out) without sounding
    /// the same: what siblings' names are too.
    pub fn one_character_apart(self) -> bool {
        matches!(
            self,
            NameAgreement::OneEdit
                | NameAgreement::NearSound
                | NameAgreement::Masked
                | NameAgreement::LeftOut
                | NameAgreement::LookAlike
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinyin_key(name: &str) -> String {
        sound_keys(name).0
    }

    fn syllable_key(name: &str) -> String {
        sound_keys(name).1
    }

    #[test]
    fn near_sound_folds_the_fuzzy_pairs_of_input_methods() {
        let near = |name: &str| sound_keys(name).2;
        assert_eq!(near("刘兰"), near("刘南"));
        assert_eq!(near("张秀英"), near("赞秀银"));
        assert_eq!(near("王芳"), near("王航"));
        assert_eq!(near("陈"), "cen");
        // -ong keeps its g; different syllables stay apart.
        assert_eq!(near("龙"), "long");
        assert_ne!(near("张子涵"), near("张子轩"));
        assert_eq!(near(""), "");
    }

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
        assert_eq!(pinyin_key("张伟"), "zhangwei");
        assert_eq!(pinyin_key("张伟"), pinyin_key("张玮"));
        assert_eq!(pinyin_key("張偉"), pinyin_key("张伟"));
        assert_ne!(pinyin_key("张伟"), pinyin_key("张强"));
    }

    #[test]
    fn names_in_pinyin_letters_share_the_pinyin_key() {
        for latin in [
            "Zhang Wei",
            "ZHANG Wei",
            "zhang-wei",
            "ZHANGWEI",
            "Zhang  Wei",
        ] {
            assert_eq!(pinyin_key(latin), pinyin_key("张伟"), "{latin}");
        }
        assert_eq!(pinyin_key("Zhang Xiao-Wei"), pinyin_key("张晓伟"));
        assert_ne!(pinyin_key("Wei Zhang"), pinyin_key("张伟"));
    }

    #[test]
    fn swapped_order_shares_the_syllable_key() {
        let k = syllable_key("张伟");
        assert_eq!(k, "wei zhang");
        for other in ["Wei Zhang", "WEI ZHANG", "伟张", "weizhang", "Zhang Wei"] {
            assert_eq!(syllable_key(other), k, "{other}");
        }
        assert_eq!(syllable_key("Xiaowei Zhang"), syllable_key("张晓伟"));
        assert_eq!(syllable_key("Xiao-Wei ZHANG"), syllable_key("张晓伟"));
        assert_ne!(syllable_key("Wei Zhang"), syllable_key("张强"));
        // Letters that are no pinyin stay one token.
        assert_eq!(syllable_key("Smith John"), "john smith");
    }

    #[test]
    fn one_edit_apart_names_share_a_variant() {
        let share = |a: &str, b: &str| {
            let (va, vb) = (edit_variants(a), edit_variants(b));
            va.iter().any(|v| vb.contains(v) || *v == fold(b)) || vb.contains(&fold(a))
        };
        assert!(share("王秀英", "王季英"), "substitution");
        assert!(share("张伟", "张小伟"), "insertion");
        assert!(share("欧阳明华", "欧阳华"), "deletion");
        assert!(!share("王秀英", "李季英"), "two edits");
        assert!(edit_variants("王").is_empty());
        assert_eq!(edit_variants("王王"), vec!["王".to_string()]);
    }
}
