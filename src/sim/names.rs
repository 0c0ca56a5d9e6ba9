//! Name, place and activity vocabularies for the simulated population (all embedded).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Common Chinese surnames with rough relative frequencies (per mille of the population).
const SURNAMES: [(&str, u32); 60] = [
    ("王", 72),
    ("李", 71),
    ("张", 68),
    ("刘", 53),
    ("陈", 45),
    ("杨", 31),
    ("黄", 22),
    ("赵", 20),
    ("吴", 20),
    ("周", 19),
    ("徐", 15),
    ("孙", 15),
    ("马", 12),
    ("朱", 12),
    ("胡", 12),
    ("郭", 11),
    ("何", 10),
    ("高", 10),
    ("林", 10),
    ("罗", 10),
    ("郑", 9),
    ("梁", 9),
    ("谢", 8),
    ("宋", 8),
    ("唐", 7),
    ("许", 7),
    ("韩", 7),
    ("冯", 7),
    ("邓", 7),
    ("曹", 6),
    ("彭", 6),
    ("曾", 6),
    ("肖", 6),
    ("田", 6),
    ("董", 5),
    ("袁", 5),
    ("潘", 5),
    ("于", 5),
    ("蒋", 5),
    ("蔡", 5),
    ("余", 5),
    ("杜", 5),
    ("叶", 4),
    ("程", 4),
    ("苏", 4),
    ("魏", 4),
    ("吕", 4),
    ("丁", 4),
    ("任", 4),
    ("沈", 4),
    ("姚", 3),
    ("卢", 3),
    ("熊", 3),
    ("万", 3),
    ("涂", 3),
    ("邹", 3),
    ("欧阳", 1),
    ("司马", 1),
    ("诸葛", 1),
    ("上官", 1),
];

const GIVEN_MALE: &str =
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林欢阳建国峰亮成东文志";
const GIVEN_FEMALE: &str =
    "芳娜敏静丽艳娟霞秀英华慧巧美婷雪琳玉萍红梅兰凤洁琴云莲真环倩颖露瑶怡佳欣";

const MINORITY_MALE: [&str; 10] = [
    "阿卜杜·热合曼",
    "买买提·艾力",
    "艾尔肯·吐尔逊",
    "努尔·阿不都",
    "扎西·多吉",
    "巴特尔·其其格",
    "吐尔洪·买买提",
    "热合曼·阿布力孜",
    "次仁·旺堆",
    "阿力木·卡德尔",
];
const MINORITY_FEMALE: [&str; 10] = [
    "古丽·热合曼",
    "阿依古丽·买买提",
    "帕提古丽·艾力",
    "卓玛·次仁",
    "其其格·巴特尔",
    "热依拉·吐尔逊",
    "迪丽拜尔·阿不都",
    "米日古丽·卡德尔",
    "央金·旺堆",
    "娜扎·阿布力孜",
];

/// A random realistic name; `male` picks the given-name pool.
pub fn person_name(rng: &mut ChaCha8Rng, male: bool) -> String {
    if rng.random_bool(0.01) {
        let pool = if male {
            &MINORITY_MALE
        } else {
            &MINORITY_FEMALE
        };
        return pool[rng.random_range(0..pool.len())].to_string();
    }
    let total: u32 = SURNAMES.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    let mut surname = SURNAMES[0].0;
    for (s, w) in SURNAMES {
        if pick < w {
            surname = s;
            break;
        }
        pick -= w;
    }
    let pool: Vec<char> = if male { GIVEN_MALE } else { GIVEN_FEMALE }
        .chars()
        .collect();
    let mut name = surname.to_string();
    let len = if rng.random_bool(0.3) { 1 } else { 2 };
    for _ in 0..len {
        name.push(pool[rng.random_range(0..pool.len())]);
    }
    name
}

const COMMUNITY_PREFIX: &str =
    "阳明翠苑青云桃花丰和滨江红角洲朝阳八一光明紫阳象湖莲塘幸福和平民德胜利";
const COMMUNITY_SUFFIX: [&str; 8] = ["", "东", "西", "南", "北", "新村", "花园", "里"];

/// A generated community name ending in 社区.
pub fn community_name(rng: &mut ChaCha8Rng) -> String {
    let chars: Vec<char> = COMMUNITY_PREFIX.chars().collect();
    let a = chars[rng.random_range(0..chars.len())];
    let b = chars[rng.random_range(0..chars.len())];
    let suffix = COMMUNITY_SUFFIX[rng.random_range(0..COMMUNITY_SUFFIX.len())];
    format!("{a}{b}{suffix}社区")
}

pub const MERCHANTS: [&str; 12] = [
    "社区食堂",
    "便民超市",
    "老年活动中心",
    "社区卫生服务站",
    "公交IC充值点",
    "菜市场",
    "洗衣店",
    "理发店",
    "社区书屋",
    "停车场",
    "水电代缴",
    "药店",
];

pub const ACTIVITIES: [&str; 10] = [
    "社区环境清洁",
    "关爱空巢老人",
    "文明交通劝导",
    "垃圾分类宣传",
    "防疫志愿服务",
    "义务理发",
    "助残帮扶",
    "图书整理",
    "反诈宣传",
    "四点半课堂",
];

pub const FOLLOWUP_TYPES: [&str; 5] = [
    "高血压随访",
    "糖尿病随访",
    "老年人健康管理",
    "慢病复诊",
    "家庭医生签约随访",
];

/// Province-level county codes outside Nanchang for the few "from elsewhere" residents.
pub const OTHER_COUNTIES: [&str; 8] = [
    "110105", "310115", "440106", "420106", "430102", "330106", "350102", "510107",
];
