"""The agent's own series that remote-write carries beside probe results: office info, config, queue health.

A scraped agent's self-metrics reach Prometheus with its /metrics; an office that only pushes would otherwise be
invisible to the alert rules on config, reloads and backlog. Histograms stay local (too many series for a WAN).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

PUSHED_PREFIXES = ("egov_agent_", "egov_office_info")
INTERVAL_SECONDS = 60.0
"""How often the agent's own series are queued (the alert rules judge them over 10 minutes)."""

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def agent_samples(registry: CollectorRegistry) -> list[Sample]:
    """The gauge, counter and info samples of the registry whose names start with PUSHED_PREFIXES."""
    out: list[Sample] = []
    for family in registry.collect():
        if family.type not in ("gauge", "counter", "info") or not family.name.startswith(PUSHED_PREFIXES):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.append((sample.name, tuple(sorted(sample.labels.items())), float(sample.value)))
    return out
