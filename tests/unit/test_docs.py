"""The documentation against the code: collectors/README.md and the example configs.

collectors/README.md must have a `## <kind>` section for every registered kind that names each metric the kind
declares, in backticks (`name` or `name{labels}`). Every ```yaml block with a `kind:` key must be a valid config
once an `office:` block is added (a block that is one module's body is put under `modules:` first); none may
abbreviate with `...`.

config/examples/*.yaml load as shipped in tests/unit/test_config.py. Their lines marked `#| ` need secret files
that exist only on office servers; here those lines are enabled and the result must load too.

Secrets (`{file: ...}`, `{env: ...}`) are read when a config loads, so in both cases every secret is pointed at a
test secret file first. The YAML is rewritten at the node level, so duplicate keys still reach parse_config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agent.config import parse_config
from agent.errors import ConfigError
from collectors import COLLECTORS

REPO = Path(__file__).resolve().parents[2]
README = REPO / "collectors/README.md"
EXAMPLES = sorted((REPO / "config/examples").glob("*.yaml"))
SECRET_MARKER = re.compile(r"^(\s*)#\| ?", re.MULTILINE)
OFFICE = "office: {org_id: 000.00.00.H49, name: docs test, level: province}\n"
TEST_SECRET = "docs-test-secret-value\n"  # 8+ characters: SNMPv3 passwords need them
_STR = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Block:
    """One ```yaml block of a Markdown file."""

    line: int
    """Line of the opening fence (1-based)."""
    text: str


def readme_sections() -> dict[str, list[str]]:
    """The text of each `## ` section by its title (a list, so a duplicated title shows)."""
    sections: dict[str, list[str]] = {}
    for part in re.split(r"^## ", README.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        title, _, body = part.partition("\n")
        sections.setdefault(title.strip(), []).append(body)
    return sections


def yaml_blocks(path: Path) -> list[Block]:
    """Every ```yaml fenced block of a Markdown file, with the line of its opening fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if not lines[index].strip().startswith("```yaml"):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{path.name}: the yaml block at line {index + 1} is not closed"
        blocks.append(Block(index + 1, "\n".join(lines[index + 1:end]) + "\n"))
        index = end + 1
    return blocks


def with_test_secrets(text: str, secret: Path) -> bytes:
    """The YAML text with every {file: ...} / {env: ...} mapping replaced by {file: SECRET}, an office added."""
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode), "the block is not a YAML mapping"
    _point_secrets(root, secret)
    keys = {key.value for key, _ in root.value if isinstance(key, yaml.ScalarNode)}
    if "kind" in keys:  # one module's body
        root = yaml.MappingNode("tag:yaml.org,2002:map", [(_scalar("modules"), yaml.MappingNode(
            "tag:yaml.org,2002:map", [(_scalar("example"), root)]))])
    document = yaml.serialize(root, allow_unicode=True)
    if "office" not in keys:
        document = OFFICE + document
    return document.encode("utf-8")


def _point_secrets(node: yaml.Node, secret: Path) -> None:
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _point_secrets(item, secret)
    elif isinstance(node, yaml.MappingNode):
        keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
        if keys in (["file"], ["env"]):
            node.value = [(_scalar("file"), _scalar(str(secret)))]
            return
        for _, value in node.value:
            _point_secrets(value, secret)


def _scalar(value: str) -> yaml.ScalarNode:
    return yaml.ScalarNode(_STR, value)


def _load(raw: bytes, source: str) -> object:
    try:
        return parse_config(raw, source)
    except ConfigError as err:
        pytest.fail(f"{err.render()}\n--- as validated:\n{raw.decode()}")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(TEST_SECRET, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", sorted(COLLECTORS))
def test_every_kind_has_a_section_naming_its_metrics(kind: str) -> None:
    sections = readme_sections()
    assert len(sections.get(kind, [])) == 1, f"collectors/README.md needs exactly one '## {kind}' section"
    section = sections[kind][0]
    missing = [spec.name for spec in COLLECTORS[kind].metrics
               if not re.search(rf"`{re.escape(spec.name)}(\{{[^`]*\}})?`", section)]
    assert not missing, f"'## {kind}' does not name these metrics in backticks: {', '.join(missing)}"


BLOCKS = [block for block in yaml_blocks(README) if re.search(r"(^|[\s{,])kind:", block.text, re.MULTILINE)]


def test_readme_has_module_examples() -> None:
    assert len(BLOCKS) >= len(COLLECTORS)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{block.line}" for block in BLOCKS])
def test_readme_yaml_blocks_are_valid_configs(block: Block, secret: Path) -> None:
    where = f"collectors/README.md: the yaml block at line {block.line}"
    assert "..." not in block.text, f"{where} abbreviates with '...': write it out in full"
    config = _load(with_test_secrets(block.text, secret), f"collectors/README.md:{block.line}")
    assert config.model.modules or config.checks  # type: ignore[attr-defined]


def test_examples_exist_per_level() -> None:
    assert {path.stem for path in EXAMPLES} >= {"province", "district", "commune"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_with_secret_lines_enabled(path: Path, secret: Path) -> None:
    text = path.read_text(encoding="utf-8")
    enabled = SECRET_MARKER.sub(r"\1", text)
    config = _load(with_test_secrets(enabled, secret), f"{path.name} with '#| ' lines enabled")
    if path.stem in {"province", "district", "commune"}:  # the office examples; the others show one kind each
        assert config.office.level == path.stem  # type: ignore[attr-defined]
