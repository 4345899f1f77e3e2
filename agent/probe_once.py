"""One run of one module against one target, rendered as Prometheus text (the `probe` subcommand)."""

from __future__ import annotations

from typing import Any

from agent.config import Config
from agent.lifecycle import office_labels
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS
from exporters.exposition import Exposition


async def probe_once(config: Config | None, module_name: str, module: Any, target: str,
                     auth: Any = None) -> tuple[str, ProbeResult]:
    """Run the module once (with a named auth applied, if given); returns the exposition text and the result.

    ValueError for a target or an auth the module cannot take.
    """
    spec = COLLECTORS[module.kind]
    settings = getattr(module, module.kind)
    if auth is not None:
        if spec.with_auth is None:
            raise ValueError(f"module {module_name!r} is of kind {module.kind}, which takes no auth")
        settings = spec.with_auth(settings, auth)
    if spec.check_target is not None:
        spec.check_target(target, settings)
    job = Job(
        check="probe",
        target=target,
        module=module_name,
        service="other",
        interval=module.timeout + 1,
        timeout=module.timeout,
        spec=spec,
        settings=settings,
        state_dir=config.agent.state_dir if config is not None else "",
    )
    result = await run_job(job)
    exposition = Exposition(office_labels(config) if config is not None else {})
    exposition.update(result)
    return exposition.body().decode(), result
