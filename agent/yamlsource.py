"""YAML read for clear errors: duplicate keys refused, and the line of any YAML path in the parsed node tree."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from agent.errors import ConfigError, ConfigIssue


def read_yaml(raw: bytes, source: str) -> tuple[Any, yaml.Node | None]:
    """Decode and parse a YAML file's bytes; ConfigError(source) with the line for bad UTF-8 or bad YAML."""
    try:
        return parse_nodes(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        at_line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(source, [ConfigIssue("", f"not UTF-8 text ({err.reason})", at_line)]) from None
    except yaml.MarkedYAMLError as err:
        mark_line = err.problem_mark.line + 1 if err.problem_mark else None
        what = f"{err.context or ''} {err.problem or ''}".strip()
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {what}", mark_line)]) from None
    except (yaml.YAMLError, RecursionError) as err:  # RecursionError: nesting deeper than the parser's stack
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {err}")]) from None


def parse_nodes(text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for line_of); raises yaml.YAMLError, also for a duplicate key."""
    loader = StrictLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return data, root


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the value at YAML path `loc` (a key's line when its value is missing), else the nearest."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if match is None:
                key = next((k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def format_path(loc: tuple[Any, ...]) -> str:
    """('checks', 2, 'interval') -> 'checks[2].interval'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader itself reports unhashable keys
            try:
                duplicate = key in seen
            except TypeError:  # hashable by type but not by value, e.g. a tuple holding a list
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
