"""The one small interface every collector implements: specs, the per-run sink and the probe context."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import Outcome

MetricType = Literal["gauge", "counter", "histogram"]
STEP_MARGIN_SECONDS = 0.05
RESERVED_LABELS = frozenset({"check", "module", "service", "target", "org_id", "level", "le", "__name__"})
"""Label names the agent adds to every series (and histograms' le): no collector may use them."""


MetricName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=200)]
"""A metric name the config gives (sql queries, register columns)."""
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=100)]


def check_user_metric_name(name: str, own: frozenset[str]) -> None:
    """ValueError if a config-given metric name is the agent's: `__*`, `probe_*`, `egov_agent_*` or a kind's own."""
    if name.startswith(("__", "probe_", "egov_agent_")) or name in own:
        raise ValueError(f"metric_name {name!r} is reserved for the agent's own metrics")


class Settings(BaseModel):
    """Base of every kind's settings block: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric a collector may emit: the catalogue entry behind HELP and TYPE."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    open_labels: bool = False
    """The label names come from the config (probe_expect_info); recorded with MetricSink.add_labelled."""


class Sample(NamedTuple):
    """One value of one series; labels are (name, value) pairs in the spec's order."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


class MetricSink:
    """Collects the samples of one run; refuses names and labels its catalogue does not declare."""

    __slots__ = ("_catalog", "_samples")

    def __init__(self, catalog: dict[str, MetricSpec]) -> None:
        self._catalog = catalog
        self._samples: list[Sample] = []

    def add(self, name: str, value: float, *label_values: str) -> None:
        """Record one sample; label values are given in the order the spec declares them."""
        spec = self._catalog.get(name)
        if spec is None:
            raise ValueError(f"metric {name!r} is not declared by this collector")
        if spec.type == "histogram":
            raise ValueError(f"metric {name!r} is a histogram: use add_histogram")
        if len(label_values) != len(spec.labels):
            raise ValueError(f"metric {name!r} takes labels {spec.labels}, got {len(label_values)} values")
        self._samples.append(Sample(name, tuple(zip(spec.labels, label_values, strict=True)), float(value)))

    def add_histogram(
        self, name: str, buckets: Sequence[tuple[float, float]], total: float, *label_values: str
    ) -> None:
        """Record a histogram as NAME_bucket{le} per (upper bound, cumulative count), ending at +Inf; _sum; _count."""
        spec = self._catalog.get(name)
        if spec is None or spec.type != "histogram":
            raise ValueError(f"metric {name!r} is not declared as a histogram by this collector")
        if len(label_values) != len(spec.labels):
            raise ValueError(f"metric {name!r} takes labels {spec.labels}, got {len(label_values)} values")
        if not buckets or buckets[-1][0] != math.inf:
            raise ValueError(f"histogram {name!r} needs buckets ending with +Inf")
        labels = tuple(zip(spec.labels, label_values, strict=True))
        for bound, count in buckets:
            self._samples.append(Sample(f"{name}_bucket", (*labels, ("le", _format_le(bound))), float(count)))
        self._samples.append(Sample(f"{name}_sum", labels, float(total)))
        self._samples.append(Sample(f"{name}_count", labels, float(buckets[-1][1])))

    def add_labelled(self, name: str, value: float, labels: Sequence[tuple[str, str]]) -> None:
        """Record a sample of a metric declared with open_labels, its label names given by the config."""
        spec = self._catalog.get(name)
        if spec is None or not spec.open_labels:
            raise ValueError(f"metric {name!r} is not declared with open labels")
        self._samples.append(Sample(name, tuple(labels), float(value)))

    def samples(self) -> list[Sample]:
        """The samples recorded so far, in the order they were added."""
        return self._samples


@dataclass(slots=True)
class LogLine:
    """One line of a run's debug log."""

    at: float
    level: str
    message: str


@dataclass(slots=True)
class ProbeContext:
    """What a probe gets for one run: target, deadline, sink, log, and where to record the outcome."""

    check: str
    module: str
    target: str
    deadline: float
    sink: MetricSink
    outcome: Outcome = Outcome.SUCCESS
    error: str = ""
    lines: list[LogLine] = field(default_factory=list)
    partial_errors: dict[str, int] = field(default_factory=dict)
    state_dir: str = ""
    """The agent's state directory ("" when there is none, as for `egov-agent probe` without a config)."""

    def remaining(self) -> float:
        """Seconds left before the run's deadline (never negative)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def step_deadline(self) -> float:
        """A loop-time deadline just before the run's, so a stuck step ends with its own message and metrics.

        The margin (at most 50 ms, a tenth of the run's time left) is wide enough for a busy event loop to run the
        step's timeout before the runner's.
        """
        return self.deadline - min(STEP_MARGIN_SECONDS, self.remaining() / 10)

    def log(self, message: str, *args: object, level: str = "debug") -> None:
        """Add a line to the run's debug log."""
        self.lines.append(LogLine(time.time(), level, message % args if args else message))

    def fail(self, outcome: Outcome, message: str, *args: object) -> Literal[False]:
        """Record an expected failure and return False, for `return ctx.fail(...)`."""
        text = message % args if args else message
        self.outcome = outcome
        self.error = text
        self.lines.append(LogLine(time.time(), "error", text))
        return False

    def count_partial_error(self, subsystem: str) -> None:
        """Count a part of the run that failed while the rest was still reported."""
        self.partial_errors[subsystem] = self.partial_errors.get(subsystem, 0) + 1


S = TypeVar("S", bound=Settings)
ProbeFn = Callable[[ProbeContext, S], Awaitable[bool]]


@dataclass(frozen=True)
class CollectorSpec(Generic[S]):
    """A probe kind: its settings model, its probe function and every metric it may emit."""

    kind: str
    settings: type[S]
    probe: ProbeFn[S]
    metrics: tuple[MetricSpec, ...]
    builtin_modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    check_target: Callable[[str, S], None] | None = None
    check_module: Callable[[S, float], None] | None = None
    """Raises ValueError when these settings cannot work within the module's timeout (seconds)."""
    auth_model: type[BaseModel] | None = None
    """The model of this kind's entries in the config's top-level `auths:` (snmp_exporter's auths)."""
    with_auth: Callable[[S, Any], S] | None = None
    """These settings with a named auth from `auths:` applied (a check's `auth:`)."""
    builtin_auths: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: Callable[[S], list[str]] | None = None
    """What `check-config` warns about in these settings: allowed, but weak (clear-text SNMP, MD5, DES)."""
    settings_metrics: Callable[[S], Sequence[MetricSpec]] | None = None
    """Metrics named by the settings themselves (sql queries, register columns, user SNMP OIDs), beside `metrics`;
    one with a name of `metrics` replaces it for these settings (other labels or help, never another type)."""

    @cached_property
    def catalog(self) -> dict[str, MetricSpec]:
        """The metrics by name, as the sink and the renderer look them up."""
        return {m.name: m for m in self.metrics}

    def catalog_for(self, settings: S) -> dict[str, MetricSpec]:
        """The metrics a run with these settings may emit: the kind's own plus those its settings name."""
        if self.settings_metrics is None:
            return self.catalog
        catalog = dict(self.catalog)
        named: set[str] = set()
        for spec in self.settings_metrics(settings):
            known = catalog.get(spec.name)
            if spec.name in named and known != spec:
                raise ValueError(f"metric {spec.name!r} is declared twice with different type, help or labels")
            if known is not None and known.type != spec.type:
                raise ValueError(f"metric {spec.name!r} is a {known.type} here; it cannot be a {spec.type}")
            catalog[spec.name] = spec
            named.add(spec.name)
        return catalog


def _format_le(bound: float) -> str:
    """An upper bound as Prometheus client libraries write `le`: 0.0001, 5e-05, 1, +Inf."""
    if bound == math.inf:
        return "+Inf"
    return str(int(bound)) if bound.is_integer() else repr(bound)
