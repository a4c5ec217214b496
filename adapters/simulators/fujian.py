"""Fujian reference data for the synthetic population: regions with their police stations,
streets, estates and employers; surnames and given-name characters; insurance codes.

Region codes are real administrative division codes; station, street and employer names are
plausible for the place, not a directory of real organisations.
"""

from __future__ import annotations

from dataclasses import dataclass

# Region codes used in ID numbers (birth registration) and, for districts, as residence.
ID_REGIONS = (
    "350100",
    "350102",
    "350200",
    "350206",
    "350500",
    "350505",
    "350583",
    "350900",
    "350902",
    "350981",
    "350300",
    "350304",
)


@dataclass(frozen=True)
class Region:
    code: str
    address_prefix: str  # 福建省泉州市泉港区
    short: str  # for certificate numbers: 泉港区
    police: str  # 泉州市公安局泉港分局 (the station name follows)
    stations: tuple[str, ...]
    streets: tuple[str, ...]
    estates: tuple[str, ...]
    employers: tuple[str, ...]
    she_share: float = 0.0  # share of She (畲族) households


REGIONS: dict[str, Region] = {
    r.code: r
    for r in (
        Region(
            "350102",
            "福建省福州市鼓楼区",
            "鼓楼区",
            "福州市公安局鼓楼分局",
            ("东街", "温泉", "鼓东", "五凤"),
            ("五四路", "杨桥中路", "湖东路", "铜盘路", "乌山路"),
            ("温泉花园", "五凤山庄", "屏西小区", "左海公寓"),
            (
                "福州市鼓楼区人民医院",
                "福建省立医院",
                "福州软件园开发有限公司",
                "福州市鼓楼区实验小学",
            ),
        ),
        Region(
            "350206",
            "福建省厦门市湖里区",
            "湖里区",
            "厦门市公安局湖里分局",
            ("湖里", "殿前", "江头", "金山"),
            ("湖里大道", "枋湖路", "金山路", "殿前路", "云顶北路"),
            ("金山小区", "枋湖花园", "湖里新村", "五缘湾花园"),
            ("厦门航空有限公司", "厦门建发股份有限公司", "厦门湖里万达商业管理有限公司"),
        ),
        Region(
            "350505",
            "福建省泉州市泉港区",
            "泉港区",
            "泉州市公安局泉港分局",
            ("山腰", "前黄", "南埔", "涂岭", "界山", "后龙"),
            ("驿峰东路", "驿峰中路", "沙格路", "南山路", "前黄镇凤翔路", "山腰街道盐场路"),
            ("锦绣花园", "泉港新城", "驿峰花园", "石化生活区"),
            (
                "福建省泉港石化有限公司",
                "福建联合石油化工有限公司",
                "泉州市泉港区医院",
                "泉港区山腰盐场",
                "泉州市泉港区第一中学",
            ),
        ),
        Region(
            "350583",
            "福建省泉州市南安市",
            "南安市",
            "南安市公安局",
            ("溪美", "柳城", "美林", "水头"),
            ("成功街", "柳城路", "美林街道南美路", "水头镇海联路"),
            ("成功花园", "柳城新村", "水头石材城小区"),
            ("南安市水头石材有限公司", "福建南安卫浴有限公司", "南安市医院"),
        ),
        Region(
            "350902",
            "福建省宁德市蕉城区",
            "蕉城区",
            "宁德市公安局蕉城分局",
            ("蕉南", "蕉北", "城南", "漳湾"),
            ("蕉城南路", "天湖路", "闽东中路", "八一五中路"),
            ("东湖花园", "天湖小区", "漳湾新村"),
            ("宁德新能源科技有限公司", "宁德市蕉城区医院", "宁德市蕉城区实验小学"),
            0.08,
        ),
        Region(
            "350981",
            "福建省宁德市福安市",
            "福安市",
            "福安市公安局",
            ("城南", "城北", "阳头", "穆阳", "坂中"),
            ("阳头街道富春路", "城北街道华兴路", "溪北洋新区", "穆阳镇穆阳街", "坂中畲族乡和安路"),
            ("富春花园", "阳头新村", "溪北洋小区"),
            ("福建福安闽东亚南电机有限公司", "福安市医院", "福安市电机电器有限公司"),
            0.25,
        ),
        Region(
            "350304",
            "福建省莆田市荔城区",
            "荔城区",
            "莆田市公安局荔城分局",
            ("镇海", "拱辰", "西天尾", "新度"),
            ("镇海街道东大路", "荔城中大道", "拱辰街道胜利路", "新度镇德业路"),
            ("荔城花园", "东大小区", "拱辰新村"),
            ("莆田市荔城区医院", "莆田市鞋业有限公司", "莆田学院"),
        ),
    )
}

RESIDENCE_WEIGHTS = {
    "350505": 5,
    "350981": 4,
    "350902": 2,
    "350102": 2,
    "350206": 2,
    "350583": 2,
    "350304": 1,
}

SURNAMES = "陈林黄张吴王李刘郑杨蔡许洪谢郭苏曾周江庄何肖罗高叶方施游"
SHE_SURNAMES = "雷蓝钟李"
MALE_CHARS = "伟强志明建华文俊杰斌鹏辉荣清福海平国明亮宏振宇鑫涛龙峰"
FEMALE_CHARS = "芳秀丽娟婷敏燕玲红霞静琴美雪梅兰萍颖慧晶丹琳莉月凤"

# Department codes (人社部 险种类型 XZLX) used by the social-security simulator.
EMPLOYEE_TYPES = ("110", "310", "210", "410", "510")  # 企业职工养老/职工医疗/失业/工伤/生育
RESIDENT_TYPES = ("170", "390")  # 城乡居民养老 / 城乡居民医疗
INSURANCE_NAMES = {
    "110": "企业职工基本养老保险",
    "120": "机关事业单位养老保险",
    "170": "城乡居民基本养老保险",
    "210": "失业保险",
    "310": "职工基本医疗保险",
    "390": "城乡居民基本医疗保险",
    "410": "工伤保险",
    "510": "生育保险",
}
RESIDENT_PAYER = "个人缴费(城乡居民)"
