"""robots.txt as RFC 9309 reads it: our group (or *), longest match wins, * and $ wildcards, plus Crawl-delay."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

MAX_BYTES = 500 * 1024
"""RFC 9309: crawlers must parse at least 500 KiB; what follows is ignored."""


@dataclass(frozen=True)
class Robots:
    """The rules of robots.txt that apply to one crawler."""

    rules: tuple[tuple[bool, str, re.Pattern[str]], ...] = ()
    """(allow, pattern as written, compiled) for the crawler's group."""
    crawl_delay: float | None = None
    sitemaps: tuple[str, ...] = ()
    disallow_all: bool = False
    """robots.txt could not be read (a server error or no answer): RFC 9309 says assume complete disallow."""
    _cache: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def allowed(self, path: str) -> bool:
        """Whether a crawler may fetch this path (with its query); /robots.txt itself always may be."""
        if path == "/robots.txt":
            return True
        if self.disallow_all:
            return False
        if not self.rules:
            return True
        known = self._cache.get(path)
        if known is not None:
            return known
        target = unquote(path)
        best_length, verdict = -1, True
        for allow, pattern, regex in self.rules:
            if regex.match(target) and (len(pattern) > best_length or (len(pattern) == best_length and allow)):
                best_length, verdict = len(pattern), allow
        self._cache[path] = verdict
        return verdict


ALLOW_ALL = Robots()
DISALLOW_ALL = Robots(disallow_all=True)


def parse(text: str, agent: str) -> Robots:
    """The rules for product token `agent` (its own groups, else those of `*`), Crawl-delay and Sitemap lines."""
    token = agent.lower()
    groups: list[tuple[set[str], list[tuple[str, str]]]] = []
    sitemaps: list[str] = []
    in_agents = False
    for raw in text[:MAX_BYTES].splitlines():
        line = raw.split("#", 1)[0].strip()
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "sitemap":
            if value:
                sitemaps.append(value)
            continue
        if key == "user-agent":
            if not in_agents:
                groups.append((set(), []))
                in_agents = True
            groups[-1][0].add(value.lower())
            continue
        in_agents = False
        if groups and key in ("allow", "disallow", "crawl-delay"):
            groups[-1][1].append((key, value))
    mine = [lines for agents, lines in groups if token in agents]
    chosen = mine or [lines for agents, lines in groups if "*" in agents]
    rules: list[tuple[bool, str, re.Pattern[str]]] = []
    delay: float | None = None
    for lines in chosen:
        for key, value in lines:
            if key == "crawl-delay":
                delay = _delay(value) if delay is None else delay
            elif value:  # an empty Disallow allows everything: no rule
                rules.append((key == "allow", value, _compile(unquote(value))))
    return Robots(tuple(rules), delay, tuple(sitemaps))


def _compile(pattern: str) -> re.Pattern[str]:
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    regex = ".*".join(re.escape(part) for part in body.split("*"))
    return re.compile(regex + (r"\Z" if anchored else ""), re.DOTALL)


def _delay(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86400 else None
