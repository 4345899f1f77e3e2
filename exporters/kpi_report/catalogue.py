"""The KPI catalogue (config/kpis.yaml plus user files): pydantic models, loading, errors with file, line and path."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import ConfigError, ConfigIssue
from agent.yamlsource import format_path, line_of, parse_nodes

CATALOGUE_PLACES = (Path("config/kpis.yaml"), Path(__file__).resolve().parents[2] / "config" / "kpis.yaml",
                    Path("/etc/egov-agent/kpis.yaml"))
"""Where the built-in catalogue is looked for: the working folder's config/ (like config/agent.yaml), the source
checkout, then /etc/egov-agent/ (an installed package carries no data files)."""
TEMPLATE_VARS = ("window", "period", "start", "end")
_VAR_RE = re.compile(r"\$([A-Za-z_]\w*)")
_LABEL_RE = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_Model):
    """A text in Vietnamese and English."""

    vi: Annotated[str, Field(min_length=1, max_length=300)]
    en: Annotated[str, Field(min_length=1, max_length=300)]

    def get(self, lang: str) -> str:
        """The text in `lang` ("vi" or "en")."""
        return self.vi if lang == "vi" else self.en


class Target(_Model):
    """One target: value (or a value per level), comparison, the year it is due, the rule that sets it."""

    value: float | dict[str, float]
    op: Literal[">=", ">", "<=", "<"] = ">="
    year: int | None = None
    source: Annotated[str, Field(min_length=1, max_length=300)]
    effective_from: dt.date = dt.date(1970, 1, 1)

    def value_for(self, level: str | None) -> float | None:
        """The target value for a level (None: province-wide); None when the target has no value for it."""
        if isinstance(self.value, dict):
            return None if level is None else self.value.get(level)
        return self.value

    def met(self, value: float, level: str | None) -> bool | None:
        """Whether `value` meets the target for `level`; None when there is no target value for it."""
        goal = self.value_for(level)
        if goal is None:
            return None
        eps = 1e-9
        return {">=": value >= goal - eps, ">": value > goal + eps,
                "<=": value <= goal + eps, "<": value < goal - eps}[self.op]


class Targets(_Model):
    """The plan's 2015 target, today's successor target, and an internal (operational) target."""

    plan: Target | None = None
    successor: Target | None = None
    internal: Target | None = None

    def in_force(self, day: dt.date) -> Target | None:
        """The target applying on `day`: the most recently effective of successor, plan and internal."""
        candidates = [t for t in (self.successor, self.plan, self.internal)
                      if t is not None and t.effective_from <= day]
        return max(candidates, key=lambda t: t.effective_from, default=None)


class Kpi(_Model):
    """One KPI: how to compute it per office from the store, and how to roll offices up to levels and province."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    name: Names
    description: Names | None = None
    plan_section: Annotated[str, Field(max_length=64)] | None = None
    unit: Literal["ratio", "count", "seconds", "score"] = "ratio"
    direction: Literal["higher", "lower"] = "higher"
    aggregation: Literal["ratio_of_sums", "mean", "sum"]
    office_label: Annotated[str, Field(pattern=_LABEL_RE)] = "org_id"
    levels: Literal["all"] | list[str] | dict[str, list[str]] = "all"
    expr: Annotated[str, Field(min_length=1)] | None = None
    numerator: Annotated[str, Field(min_length=1)] | None = None
    denominator: Annotated[str, Field(min_length=1)] | None = None
    coverage: Annotated[str, Field(min_length=1)]
    targets: Targets

    @model_validator(mode="after")
    def _consistent(self) -> Kpi:
        if self.aggregation == "ratio_of_sums":
            if self.numerator is None or self.denominator is None or self.expr is not None:
                raise ValueError("aggregation ratio_of_sums needs numerator and denominator (and no expr)")
        elif self.expr is None or self.numerator is not None or self.denominator is not None:
            raise ValueError(f"aggregation {self.aggregation} needs expr (and no numerator/denominator)")
        for text in (self.expr, self.numerator, self.denominator, self.coverage):
            unknown = sorted({v for v in _VAR_RE.findall(text or "") if v not in TEMPLATE_VARS})
            if unknown:
                raise ValueError(f"unknown variable ${unknown[0]} in a query; known: "
                                 + ", ".join(f"${v}" for v in TEMPLATE_VARS))
        if "[" in self.coverage or "(" in self.coverage:
            raise ValueError("coverage must be a series selector such as probe_success{service=\"wan\"}, "
                             "without functions or ranges")
        if all(t is None for t in (self.targets.plan, self.targets.successor, self.targets.internal)):
            raise ValueError("targets needs at least one of plan, successor, internal")
        return self

    def applies_to(self, hierarchy: str, level: str) -> bool:
        """Whether the KPI is reported for offices of `level` in `hierarchy`."""
        if self.levels == "all":
            return True
        if isinstance(self.levels, list):
            return level in self.levels
        return level in self.levels.get(hierarchy, [])

    def queries(self) -> dict[str, str]:
        """The templated PromQL queries by role: value, or numerator and denominator."""
        if self.expr is not None:
            return {"value": self.expr}
        assert self.numerator is not None and self.denominator is not None
        return {"numerator": self.numerator, "denominator": self.denominator}


class Catalogue(_Model):
    """A catalogue file: a list of KPIs."""

    kpis: Annotated[list[Kpi], Field(min_length=1)]


def default_catalogue() -> Path:
    """The built-in catalogue's path; ValueError naming the places looked at if none exists."""
    for place in CATALOGUE_PLACES:
        if place.is_file():
            return place
    raise ValueError("no KPI catalogue found in " + ", ".join(str(p) for p in CATALOGUE_PLACES)
                     + ": copy config/kpis.yaml there, or pass --kpis FILE --no-default-kpis")


def render_query(template: str, values: dict[str, str]) -> str:
    """Replace $window, $period, $start and $end in a query."""
    return _VAR_RE.sub(lambda m: values[m.group(1)], template)


def load_catalogues(paths: Sequence[str | Path]) -> list[Kpi]:
    """Load catalogue files in order; raises ConfigError (file, line, YAML path) for bad files or duplicate ids."""
    kpis: list[Kpi] = []
    seen: dict[str, str] = {}
    for path in paths:
        source = str(path)
        root, data = _read_yaml(path)
        try:
            catalogue = Catalogue.model_validate(data)
        except ValidationError as err:
            raise ConfigError(source, [_issue(e, root) for e in err.errors()]) from None
        issues = []
        for index, kpi in enumerate(catalogue.kpis):
            if kpi.id in seen:
                issues.append(ConfigIssue(f"kpis[{index}].id", f"duplicate KPI id {kpi.id!r} (first in {seen[kpi.id]})",
                                          line_of(root, ("kpis", index, "id"))))
            seen[kpi.id] = source
            kpis.append(kpi)
        if issues:
            raise ConfigError(source, issues)
    return kpis


def _read_yaml(path: str | Path) -> tuple[yaml.Node | None, Any]:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(source, [ConfigIssue("", f"cannot read KPI catalogue: {err.strerror or err}")]) from None
    try:
        data, root = parse_nodes(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(source, [ConfigIssue("", "not UTF-8 text", raw[: err.start].count(b"\n") + 1)]) from None
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else None
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {err.problem or err}", line)]) from None
    except yaml.YAMLError as err:
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {err}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "a KPI catalogue must be a mapping with a kpis: list")])
    return root, data


def _issue(error: Any, root: yaml.Node | None) -> ConfigIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    message = {"extra_forbidden": "unknown key", "missing": "missing required key"}.get(
        kind, str(error["msg"]).removeprefix("Value error, "))
    return ConfigIssue(format_path(loc), message, line_of(root, loc))


