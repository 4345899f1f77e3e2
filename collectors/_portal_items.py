"""What a portal must publish (Decree 42/2022/NĐ-CP): item rules, their Vietnamese defaults, accent-free folding."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator, model_validator

from collectors.base import Settings

ItemName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Phrase = Annotated[str, Field(min_length=1, max_length=200)]


def fold(text: str) -> str:
    """Lower case without Vietnamese diacritics (đ -> d), whitespace runs as one space: 'Văn  Bản' -> 'van ban'."""
    return " ".join(text.lower().translate(_fold_table()).split())


def _compile_icase(value: object) -> object:
    if isinstance(value, str):
        try:
            return re.compile(value, re.IGNORECASE)
        except re.error as err:
            raise ValueError(f"invalid regular expression: {err}") from None
    return value


UrlPattern = Annotated[re.Pattern[str], BeforeValidator(_compile_icase)]


class ItemRule(Settings):
    """How to recognise one item: any rule that matches on any crawled page makes the item present.

    link_texts and content are matched accent-insensitively (folded) as substrings; url_patterns are regexes
    (case-insensitive) searched in a link's absolute URL; languages match a link's hreflang or a crawled page's
    <html lang>; search_form matches a form with a search box.
    """

    link_texts: tuple[Phrase, ...] = ()
    url_patterns: tuple[UrlPattern, ...] = ()
    content: tuple[Phrase, ...] = ()
    languages: tuple[Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$")], ...] = ()
    search_form: bool = False

    @field_validator("link_texts", "content")
    @classmethod
    def _folded(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        folded = tuple(fold(phrase) for phrase in value)
        if any(not phrase for phrase in folded):
            raise ValueError("a phrase must have letters or digits, not only spaces")
        return folded

    @field_validator("languages")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(language.lower() for language in value)

    @model_validator(mode="after")
    def _some_rule(self) -> ItemRule:
        if not (self.link_texts or self.url_patterns or self.content or self.languages or self.search_form):
            raise ValueError("give at least one of link_texts, url_patterns, content, languages, search_form")
        return self


def default_items() -> dict[str, ItemRule]:
    """The items of Decree 42/2022/NĐ-CP (art. on portal content and functions) as Vietnamese portals label them."""
    return dict(_default_rules())


_DEFAULTS: dict[str, dict[str, object]] = {
    "van_ban": {  # legal and administrative documents
        "link_texts": ["văn bản", "legal documents"],
        "url_patterns": [r"van-?ban", r"legal-?doc"],
        "content": ["số ký hiệu", "trích yếu"],
    },
    "thu_tuc_hanh_chinh": {  # administrative procedures
        "link_texts": ["thủ tục hành chính", "tthc"],
        "url_patterns": [r"thu-?tuc", r"tthc"],
    },
    "dich_vu_cong": {  # online public services
        "link_texts": ["dịch vụ công"],
        "url_patterns": [r"dich-?vu-?cong", r"dvc"],
    },
    "co_cau_to_chuc": {  # functions and organisation chart
        "link_texts": ["cơ cấu tổ chức", "tổ chức bộ máy", "sơ đồ tổ chức"],
        "url_patterns": [r"co-?cau-?to-?chuc", r"to-?chuc-?bo-?may", r"so-?do-?to-?chuc"],
        "content": ["cơ cấu tổ chức"],
    },
    "lien_he": {  # contacts
        "link_texts": ["liên hệ", "danh bạ"],
        "url_patterns": [r"lien-?he", r"contact", r"danh-?ba"],
    },
    "english": {  # English information on the organisation and contacts
        "link_texts": ["english", "tiếng anh"],
        "url_patterns": [r"^https?://en\.", r"/en(/|\.|$)", r"[?&]lang=en"],
        "languages": ["en"],
    },
    "tim_kiem": {  # a search function
        "search_form": True,
    },
    "tin_tuc": {  # news
        "link_texts": ["tin tức", "tin hoạt động", "tin tuc su kien"],
        "url_patterns": [r"tin-?tuc", r"news"],
    },
}


@cache
def _default_rules() -> dict[str, ItemRule]:
    return {name: ItemRule.model_validate(rule) for name, rule in _DEFAULTS.items()}


@cache
def _fold_table() -> dict[int, str | None]:
    """Each accented Latin letter to its base letter, combining marks to nothing; built once, on first use."""
    table: dict[int, str | None] = {0x0110: "d", 0x0111: "d"}  # đ Đ have no decomposition
    for start, end in ((0x00C0, 0x0250), (0x1E00, 0x1F00)):
        for code in range(start, end):
            base = unicodedata.normalize("NFD", chr(code))[0]
            if base != chr(code) and base.isascii():
                table[code] = base
    for code in range(0x0300, 0x0370):
        table[code] = None
    return table
