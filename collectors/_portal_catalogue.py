"""Kind `publicservice`: counts of online public services by level, read by the http probe's extraction rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from agent.errors import Outcome
from collectors import http
from collectors.base import CollectorSpec, MetricSink, MetricSpec, ProbeContext, Settings

ServiceLevel = Literal["2", "3", "4", "toan_trinh", "mot_phan"]
"""The 2012 plan's levels 2-4 and Decree 42/2022's toàn trình (full-process) and một phần (partial)."""
EXTRACT_PREFIX = "service_level_"

METRICS = (
    MetricSpec("egov_public_services", "gauge",
               "Online public services in the catalogue at this service level (2, 3, 4, toan_trinh, mot_phan).",
               ("service_level",)),
    *http.METRICS,
)


def _text_keys(value: object) -> object:
    # YAML reads `2:` as the integer 2; the level names are text.
    return {str(key): rule for key, rule in value.items()} if isinstance(value, dict) else value


class LevelRule(Settings):
    """Where one level's count is: a JSON path's number or the number of matches of a regex (http's extract)."""

    json_path: str | None = None
    count_regex: http.Regex | None = None

    @field_validator("json_path")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            http.parse_json_path(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> LevelRule:
        if (self.json_path is None) == (self.count_regex is None):
            raise ValueError("give exactly one of json_path and count_regex")
        return self


class PublicServiceSettings(http.HttpSettings):
    """The http kind's settings (request, TLS, auth, steps) plus `levels`: a rule per service level counted."""

    levels: Annotated[dict[ServiceLevel, LevelRule], BeforeValidator(_text_keys), Field(min_length=1)]

    @model_validator(mode="after")
    def _own_names(self) -> PublicServiceSettings:
        taken = [item.name for request in self.requests() for item in request.extract
                 if item.name.startswith(EXTRACT_PREFIX)]
        if taken:
            raise ValueError(f"extract names starting with {EXTRACT_PREFIX!r} are reserved for levels: "
                             f"{', '.join(taken)}")
        return self

    def as_http(self) -> http.HttpSettings:
        """These settings as the http kind's, the levels added to the extract rules of the last request."""
        extracts = tuple(http.Extract(name=f"{EXTRACT_PREFIX}{level}", json_path=rule.json_path,
                                      count_regex=rule.count_regex) for level, rule in self.levels.items())
        values: dict[str, Any] = {name: getattr(self, name) for name in http.HttpSettings.model_fields}
        if self.steps:
            last = self.steps[-1]
            values["steps"] = (*self.steps[:-1], last.model_copy(update={"extract": (*last.extract, *extracts)}))
        else:
            values["extract"] = (*self.extract, *extracts)
        return http.HttpSettings.model_construct(**values)


async def probe_publicservice(ctx: ProbeContext, settings: PublicServiceSettings) -> bool:
    """Request the catalogue as the http kind does; report each level's count as egov_public_services."""
    inner = ProbeContext(ctx.check, ctx.module, ctx.target, ctx.deadline, MetricSink(http.SPEC.catalog),
                         state_dir=ctx.state_dir)
    try:
        ok = await http.probe_http(inner, settings.as_http())
    finally:
        counts = _copy(inner, ctx)
    if not ok:
        ctx.outcome, ctx.error = inner.outcome, inner.error
        return False
    missing = [level for level in settings.levels if level not in counts]
    if missing:
        return ctx.fail(Outcome.MISMATCH, "no count found for service level %s (the run log says why)",
                        ", ".join(missing))
    return True


SPEC = CollectorSpec(
    kind="publicservice",
    settings=PublicServiceSettings,
    probe=probe_publicservice,
    metrics=METRICS,
    check_target=lambda target, settings: http.check_http_target(target, settings),
)


def _copy(inner: ProbeContext, ctx: ProbeContext) -> dict[str, float]:
    """Move the http run's samples, log and partial errors over; level extracts become egov_public_services."""
    counts: dict[str, float] = {}
    for sample in inner.sink.samples():
        values = [value for _, value in sample.labels]
        if sample.name == "egov_http_extracted_value" and values[0].startswith(EXTRACT_PREFIX):
            counts[values[0].removeprefix(EXTRACT_PREFIX)] = sample.value
        else:
            ctx.sink.add(sample.name, sample.value, *values)
    for level, count in counts.items():
        ctx.sink.add("egov_public_services", count, level)
    ctx.lines.extend(inner.lines)
    for subsystem, count in inner.partial_errors.items():
        ctx.partial_errors[subsystem] = ctx.partial_errors.get(subsystem, 0) + count
    return counts
