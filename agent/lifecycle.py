"""The running agent: start-up order, reload on SIGHUP or POST /-/reload, shutdown in reverse within 10 s."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

from prometheus_client import CollectorRegistry

from agent.config import Config, load_config
from agent.config_source import LOCAL, ConfigSource, ConfigStatus
from agent.errors import ConfigError
from agent.runner import Job, ProbeResult, Runner
from agent.scheduler import Scheduler
from agent.selfmetrics import SelfMetrics
from agent.store import JobStatus, ResultStore
from agent.webconfig import WebConfig
from exporters.exposition import Exposition
from exporters.remote_write.agent_series import INTERVAL_SECONDS as AGENT_SERIES_SECONDS
from exporters.remote_write.agent_series import agent_samples
from exporters.remote_write.manager import RemoteWrite
from exporters.web import WebContext, WebServer

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 10.0
LAG_INTERVAL_SECONDS = 0.25
PROCESS_REFRESH_SECONDS = 5.0


def jobs_from_config(config: Config) -> list[Job]:
    """One job per check and target, with its module resolved."""
    from collectors import COLLECTORS

    jobs = []
    for check in config.checks:
        module = config.modules[check.module]
        spec = COLLECTORS[module.kind]
        fingerprint = config.check_fingerprint(check)
        settings = getattr(module, module.kind)
        if check.auth is not None and spec.with_auth is not None:
            settings = spec.with_auth(settings, config.auths[check.auth])
        for target in check.targets:
            jobs.append(
                Job(
                    check=check.name,
                    target=target,
                    module=check.module,
                    service=check.service,
                    interval=check.interval,
                    timeout=module.timeout,
                    spec=spec,
                    settings=settings,
                    fingerprint=fingerprint,
                    state_dir=config.agent.state_dir,
                )
            )
    return jobs


def office_labels(config: Config) -> dict[str, str]:
    """The labels every series carries."""
    return {"org_id": config.office.org_id, "level": config.office.level}


def office_info(config: Config) -> dict[str, str]:
    """The labels of egov_office_info."""
    office = config.office
    return {
        "org_id": office.org_id,
        "name": office.name,
        "level": office.level,
        "parent_id": office.parent_id or "",
        "hierarchy": config.hierarchy.name,
        "admin_code": office.admin_code or "",
    }


class Agent:
    """Owns every part of a running agent and the order in which they start and stop."""

    def __init__(self, config: Config, config_path: str, listen_address: str | None = None,
                 web_config: WebConfig | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = SelfMetrics()
        self.store = ResultStore()
        self.exposition = Exposition(office_labels(config))
        self.runner = Runner(config.agent.max_concurrent_runs)
        self.scheduler = Scheduler(self._run, self._skipped)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.metrics)
        self.remote_write = RemoteWrite(office_labels(config))
        self.registry.register(self.remote_write)
        # Central config (issue 11): what the agent runs, and its source when config_source is set.
        self.config_status = ConfigStatus(lambda: self.metrics.office_labels)
        self.registry.register(self.config_status)
        self.config_source = ConfigSource.for_config(config, self.config_status)
        self.store.subscribe(self._on_result, self.exposition.remove)
        self.store.subscribe(self.remote_write.on_result, self.remote_write.on_remove)
        self._listen_address = listen_address or config.web.listen_address
        self.web = WebServer(
            WebContext(
                exposition=self.exposition,
                registry=self.registry,
                store=self.store,
                office=lambda: office_info(self.config),
                reload=self.reload,
                ready=lambda: self._ready,
            ),
            self._listen_address,
            web_config=web_config,
            idle_timeout=config.web.idle_timeout,
        )
        self._stopping = asyncio.Event()
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Start, serve until SIGTERM or SIGINT, then stop; raises StartupError if it cannot start."""
        if self.config_source is not None:  # the fetched config, else the last known good one, else the local file
            self.config = await self.config_source.startup()
            self.runner.resize(self.config.agent.max_concurrent_runs)
        self._apply_identity(self.config)
        self.metrics.observe_reload(True)
        self.metrics.refresh_process()
        await self.web.start()
        try:
            await self.remote_write.start(self.config.remote_write, self.config.agent.state_dir)
        except BaseException:
            await self.remote_write.stop(2.0)
            await self.web.stop()
            raise
        try:
            self.scheduler.start()
            self._sync_jobs(self.config)
            self._install_signals()
            self._spawn(self._watch_loop_lag(), "loop-lag")
            self._spawn(self._refresh_process(), "process-stats")
            if self.config_source is not None:
                self._spawn(self.config_source.poll(self.reload), "config-source")
            self._spawn(self._push_agent_series(), "agent-series")
            self._ready = True
            _freeze_heap()
            log.info(
                "agent started",
                extra={"kv": {"config": self.config_path, "jobs": len(self.scheduler.jobs()),
                              "org_id": self.config.office.org_id}},
            )
            await self._stopping.wait()
        finally:
            await self._shutdown()
        return 0

    def stop(self) -> None:
        """Ask the agent to shut down."""
        self._stopping.set()

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file; a bad file keeps the running config. Returns (ok, message)."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(self._load_config)
            except ConfigError as err:
                self.metrics.observe_reload(False)
                log.error("config reload failed; keeping the running config",
                          extra={"kv": {"config": self.config_path, "errors": err.render()}})
                return False, err.render()
            if config.web.listen_address != self.config.web.listen_address:
                log.warning("web.listen_address changed; it takes effect at the next restart",
                            extra={"kv": {"listening": self._listen_address}})
            if (config.web.config_file, config.web.idle_timeout) != (self.config.web.config_file,
                                                                     self.config.web.idle_timeout):
                log.warning("web.config_file and web.idle_timeout changed; they take effect at the next restart")
            if config.office != self.config.office or config.hierarchy != self.config.hierarchy:
                self._apply_identity(config)
                for status in self.store.status():
                    self.exposition.update(status.last, status)
            if config.agent.max_concurrent_runs != self.config.agent.max_concurrent_runs:
                self.runner.resize(config.agent.max_concurrent_runs)
            await self.remote_write.apply(config.remote_write, config.agent.state_dir)
            added, changed, removed = self._sync_jobs(config)
            self.config = config
            if self.config_source is None:
                self.config_status.running(LOCAL, config.sha256)
            _freeze_heap(refreeze=True)
            self.metrics.observe_reload(True)
            log.info("config reloaded", extra={"kv": {"added": added, "changed": changed, "removed": removed}})
            return True, "ok"

    async def _push_agent_series(self) -> None:
        """Queue the agent's own series for remote-write every minute: offices that only push are seen too."""
        while True:
            if self.remote_write.destinations:
                self.remote_write.on_agent_metrics(agent_samples(self.registry), time.time())
            await asyncio.sleep(AGENT_SERIES_SECONDS)

    def _load_config(self) -> Config:
        """The config file, composed with the accepted central config when config_source is set."""
        bootstrap = load_config(self.config_path)
        return self.config_source.effective(bootstrap) if self.config_source is not None else bootstrap

    async def _run(self, job: Job) -> None:
        self.metrics.in_flight += 1
        try:
            result = await self.runner.run(job)
        finally:
            self.metrics.in_flight -= 1
        if self.scheduler.is_scheduled(job):  # a reload may have removed it while it ran
            self.store.put(result)

    def _on_result(self, result: ProbeResult, status: JobStatus) -> None:
        self.metrics.observe_run(result)
        self.exposition.update(result, status)

    def _skipped(self, job: Job) -> None:
        self.metrics.observe_skip(job.check)

    def _apply_identity(self, config: Config) -> None:
        self.metrics.office_labels = office_labels(config)
        self.metrics.office_info = office_info(config)
        self.exposition.set_office(office_labels(config))
        self.remote_write.set_office(office_labels(config))

    def _sync_jobs(self, config: Config) -> tuple[int, int, int]:
        jobs = jobs_from_config(config)
        counts = self.scheduler.sync(jobs)
        self.store.retain({job.key for job in jobs})
        self.metrics.jobs = len(jobs)
        return counts

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload_quietly(), "reload"))

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload_quietly(self) -> None:
        await self.reload()

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        self._ready = False
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await self.scheduler.shutdown(timeout=max(0.1, (deadline - time.monotonic()) / 2))
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        # Remote-write started after the web server: it stops before it, its memory written to disk.
        await self.remote_write.stop(max(0.1, deadline - time.monotonic() - 0.5))
        with suppress(TimeoutError):
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await self.web.stop()
        log.info("agent stopped")

    async def _watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_INTERVAL_SECONDS)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - started - LAG_INTERVAL_SECONDS))

    async def _refresh_process(self) -> None:
        while True:
            await asyncio.sleep(PROCESS_REFRESH_SECONDS)
            self.metrics.refresh_process()


def _freeze_heap(refreeze: bool = False) -> None:
    """Move what start-up (or a reload) built out of the collector's way: full collections then take ~1 ms.

    Without it a full collection walks every config model and module object and stalls the loop for tens of ms
    at a few hundred checks. On reload the old generation is unfrozen first, so the previous config can be freed.
    """
    if refreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
