"""Central configuration (issue 11): fetch the office's signed config, verify it, keep the last good one, poll.

The local file given to `egov-agent run --config` is the bootstrap: it names the office, `config_source:` and the
state dir. A fetched config must be signed (agent/signing.py) for this office, inside its validity window, with a
version not older than the one accepted before, and must pass agent.config validation. Then it replaces everything
except the bootstrap's `web:`, `config_source:` and `agent.state_dir` (compose()). Anything else is refused and
counted by reason; the running config stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.config import Config, format_duration, parse_config
from agent.errors import AgentError, ConfigError, ConfigIssue
from agent.signing import Envelope, SignatureError, load_public_keys, strip_signature, verify_config

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.config import ConfigSourceSettings

log = logging.getLogger(__name__)

REASONS = ("unreachable", "timeout", "tls", "http_status", "too_large", "truncated", "malformed", "bad_signature",
           "wrong_office", "expired", "not_yet_valid", "rollback", "invalid_config", "error")
"""Why a fetched config was not accepted: the values of egov_agent_config_fetch_failures_total{reason}."""
LOCAL, CENTRAL, LAST_KNOWN_GOOD = "local", "central", "last_known_good"
STATE_FOLDER = "config_source"


class Refused(AgentError):
    """A fetch that did not yield an acceptable config; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def compose(bootstrap: Config, raw: bytes, source: str) -> Config:
    """The config to run: the fetched one, with the bootstrap's web, config_source and agent.state_dir.

    Raises ConfigError when the fetched config is invalid or names another office than the bootstrap.
    """
    fetched = parse_config(raw, source)
    org_id = _expected_office(bootstrap)
    if fetched.office.org_id != org_id:
        raise ConfigError(source, [ConfigIssue("office.org_id", f"the config is for office {fetched.office.org_id}, "
                                                                f"this agent is {org_id}")])
    model: Any = fetched.model
    merged = model.model_copy(update={
        "web": bootstrap.model.web,
        "config_source": bootstrap.model.config_source,
        "agent": model.agent.model_copy(update={"state_dir": bootstrap.agent.state_dir}),
    })
    return Config(merged, source, hashlib.sha256(strip_signature(raw)).hexdigest())


class ConfigStatus(Collector):
    """What config the agent runs and how fetching it goes; a prometheus_client collector (no I/O in collect)."""

    def __init__(self, office_labels: Callable[[], dict[str, str]]) -> None:
        self._office_labels = office_labels
        self.source = LOCAL
        self.version = ""
        self.sha256 = ""
        self.accepted_at: float | None = None
        self.fetching = False
        self.last_success = 0.0
        self.failures = dict.fromkeys(REASONS, 0)

    def running(self, source: str, sha256: str, version: str = "", accepted_at: float | None = None) -> None:
        """Record the config now in use."""
        self.source, self.sha256, self.version, self.accepted_at = source, sha256, version, accepted_at

    def collect(self) -> Iterator[Metric]:
        """Yield the egov_agent_config_* metrics of the fetch state."""
        office = self._office_labels()
        names, values = list(office), list(office.values())
        info = GaugeMetricFamily("egov_agent_config_info", "The config the agent runs: its signed version, the "
                                 "SHA-256 of its bytes and where it came from (local, central, last_known_good).",
                                 labels=["version", "sha256", "source", *names])
        info.add_metric([self.version, self.sha256, self.source, *values], 1)
        yield info
        if self.version:
            version = GaugeMetricFamily("egov_agent_config_version", "Signed version number of the running config.",
                                        labels=names)
            version.add_metric(values, float(self.version))
            yield version
        if self.accepted_at is not None:
            age = GaugeMetricFamily("egov_agent_config_age_seconds", "Seconds since the running central config was "
                                    "accepted (fetched and verified).", labels=names)
            age.add_metric(values, max(0.0, time.time() - self.accepted_at))
            yield age
        if not self.fetching:
            return
        success = GaugeMetricFamily("egov_agent_config_last_fetch_success_timestamp_seconds",
                                    "When a fetch last ended with the current config (new or unchanged); 0 if never.",
                                    labels=names)
        success.add_metric(values, self.last_success)
        yield success
        failures = CounterMetricFamily("egov_agent_config_fetch_failures", "Fetches that did not yield an acceptable "
                                       "config, by reason.", labels=["reason", *names])
        for reason, count in self.failures.items():
            failures.add_metric([reason, *values], count)
        yield failures


@dataclass(frozen=True, slots=True)
class _Accepted:
    raw: bytes
    envelope: Envelope
    etag: str | None
    last_modified: str | None
    accepted_at: float


class ConfigSource:
    """Fetches and verifies the office's signed config, keeps the last good one under the state dir, polls."""

    def __init__(self, bootstrap: Config, status: ConfigStatus) -> None:
        settings = bootstrap.model.config_source
        assert settings is not None
        self.settings: ConfigSourceSettings = settings
        self.bootstrap = bootstrap
        self.status = status
        self.status.fetching = True
        self._keys: list[Ed25519PublicKey] = load_public_keys(settings.public_key)
        self._accepted: _Accepted | None = None
        self._last_failure: tuple[str, str] | None = None

    @staticmethod
    def for_config(config: Config, status: ConfigStatus) -> ConfigSource | None:
        """A source when the config has `config_source:`, else None (the status then says local)."""
        if config.model.config_source is None:
            status.running(LOCAL, config.sha256)
            return None
        return ConfigSource(config, status)

    @property
    def state_dir(self) -> Path:
        """Where the last-known-good config and its fetch metadata are kept."""
        return Path(self.bootstrap.agent.state_dir) / STATE_FOLDER

    async def startup(self) -> Config:
        """The config to start with: fetched now, else the last known good one, else the bootstrap itself."""
        self._accepted = await asyncio.to_thread(self._load_last_good)
        try:
            fetched = await self._check_once()
        except Refused as refused:
            self._failed(refused)
        else:
            if fetched is not None:
                accepted, config = fetched
                await asyncio.to_thread(self._save, accepted)
                self._accepted = accepted
                self._report(CENTRAL, config, accepted)
                return config
            if self._accepted is not None:
                config = compose(self.bootstrap, self._accepted.raw, self._source_name(self._accepted))
                self._report(CENTRAL, config, self._accepted)
                return config
        if self._accepted is not None:
            config = compose(self.bootstrap, self._accepted.raw, self._source_name(self._accepted))
            self._report(LAST_KNOWN_GOOD, config, self._accepted)
            log.warning("starting from the last known good config", extra={"kv": {
                "version": self._accepted.envelope.version, "age": format_duration(
                    max(1.0, round(time.time() - self._accepted.accepted_at)))}})
            return config
        log.warning("no central config yet: starting from the local file", extra={"kv": {
            "config": self.bootstrap.source}})
        self.status.running(LOCAL, self.bootstrap.sha256)
        return self.bootstrap

    def effective(self, bootstrap: Config) -> Config:
        """The config to run for a (re)loaded bootstrap: composed with the accepted central config, if any."""
        settings = bootstrap.model.config_source
        if settings is None:
            log.warning("config_source was removed; it takes effect at the next restart")
        elif settings != self.settings:
            self._keys = load_public_keys(settings.public_key)
            self.settings = settings
        self.bootstrap = bootstrap
        if self._accepted is None:
            return bootstrap
        return compose(bootstrap, self._accepted.raw, self._source_name(self._accepted))

    async def poll(self, apply: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        """Poll forever: every interval plus jitter, fetch; apply a newly accepted config through `apply` (reload)."""
        while True:
            jitter = self.settings.jitter if self.settings.jitter is not None else self.settings.interval / 10
            await asyncio.sleep(self.settings.interval + random.uniform(0.0, jitter))
            await self.poll_once(apply)

    async def poll_once(self, apply: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        """One poll; never raises except on cancellation."""
        try:
            fetched = await self._check_once()
            if fetched is None:
                if self._accepted is not None and self.status.source == LAST_KNOWN_GOOD:
                    self.status.source = CENTRAL  # the province confirmed it is still current
                return
            accepted, _ = fetched
            previous, self._accepted = self._accepted, accepted  # apply() composes with self._accepted
            ok, message = await apply()
            if not ok:
                self._accepted = previous
                raise Refused("invalid_config", f"applying it failed: {message}")
            await asyncio.to_thread(self._save, accepted)
            self.status.running(CENTRAL, accepted.envelope.sha256, str(accepted.envelope.version),
                                accepted.accepted_at)
            log.info("central config applied", extra={"kv": {"version": accepted.envelope.version,
                                                             "sha256": accepted.envelope.sha256[:12]}})
        except Refused as refused:
            self._failed(refused)
        except Exception as err:  # a bug must not end polling
            log.exception("config fetch failed unexpectedly")
            self._failed(Refused("error", repr(err)))

    async def _check_once(self) -> tuple[_Accepted, Config] | None:
        """Fetch and check; (accepted, config) for a new config, None when the current one is still current."""
        download = await self._download()
        if download is None:
            self._succeeded()
            return None
        raw, etag, last_modified = download
        try:
            envelope = verify_config(raw, self._keys, self.org_id, time.time())
        except SignatureError as err:
            raise Refused(err.reason, str(err)) from None
        current = self._accepted
        if current is not None:
            same = envelope.sha256 == current.envelope.sha256
            if envelope.version < current.envelope.version or (envelope.version == current.envelope.version
                                                                and not same):
                raise Refused("rollback", f"version {envelope.version} is older than the accepted "
                              f"{current.envelope.version} (or reuses its number)")
            if envelope.version == current.envelope.version:
                self._accepted = _Accepted(current.raw, current.envelope, etag, last_modified, current.accepted_at)
                self._succeeded()
                return None
        accepted = _Accepted(raw, envelope, etag, last_modified, time.time())
        try:
            # parsing and validating a few hundred checks takes tens of ms, and secrets are files: off the loop
            config = await asyncio.to_thread(compose, self.bootstrap, raw, self._source_name(accepted))
        except ConfigError as err:
            office = [i for i in err.issues if i.path == "office.org_id" and "this agent is" in i.message]
            raise Refused("wrong_office" if office else "invalid_config", err.render()) from None
        self._succeeded()
        return accepted, config

    @property
    def org_id(self) -> str:
        """The office fetched configs must be signed for."""
        return _expected_office(self.bootstrap)

    async def _download(self) -> tuple[bytes, str | None, str | None] | None:
        """GET the URL (conditional); (body, etag, last_modified), or None for 304; raises Refused."""
        import aiohttp

        from collectors._tls import client_context

        settings = self.settings
        headers = {"User-Agent": f"egov-agent/{__version__}", "Accept-Encoding": "identity"}
        if self._accepted is not None and self._accepted.etag:
            headers["If-None-Match"] = self._accepted.etag
        if self._accepted is not None and self._accepted.last_modified:
            headers["If-Modified-Since"] = self._accepted.last_modified
        try:
            async with asyncio.timeout(settings.timeout):
                connector = aiohttp.TCPConnector(ssl=client_context(settings.tls), force_close=True)
                async with aiohttp.ClientSession(connector=connector, trust_env=False) as session, session.get(
                        settings.url, headers=headers, allow_redirects=False) as response:
                    if response.status == 304 and self._accepted is not None:
                        return None
                    if response.status != 200:
                        raise Refused("http_status", f"HTTP {response.status} {response.reason or ''}".strip())
                    if response.content_length is not None and response.content_length > settings.max_bytes:
                        raise Refused("too_large", f"{response.content_length} bytes announced, max_bytes is "
                                      f"{settings.max_bytes}")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > settings.max_bytes:
                            raise Refused("too_large", f"more than max_bytes ({settings.max_bytes}) sent")
                    return bytes(body), response.headers.get("ETag"), response.headers.get("Last-Modified")
        except TimeoutError:
            raise Refused("timeout", f"no complete answer within {format_duration(settings.timeout)}") from None
        except aiohttp.ClientPayloadError as err:
            raise Refused("truncated", f"the download was cut short: {err}") from None
        except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch) as err:
            raise Refused("tls", f"TLS failed: {err}") from None
        except (aiohttp.ClientError, OSError) as err:
            raise Refused("unreachable", f"{type(err).__name__}: {err}") from None

    def _load_last_good(self) -> _Accepted | None:
        """The saved config if its signature and office still match and it validates now (no validity window)."""
        path = self.state_dir / "current.yaml"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.error("cannot read the last known good config", extra={"kv": {"path": str(path), "err": str(err)}})
            return None
        meta = self._load_meta(raw)
        try:
            envelope = verify_config(raw, self._keys, self.org_id)  # no clock: it was valid when accepted
            accepted = _Accepted(raw, envelope, meta.get("etag"), meta.get("last_modified"),
                                 float(meta.get("accepted_at") or path.stat().st_mtime))
            compose(self.bootstrap, raw, self._source_name(accepted))
        except (SignatureError, ConfigError, OSError) as err:
            log.error("ignoring the last known good config", extra={"kv": {"path": str(path), "err": str(err)}})
            return None
        return accepted

    def _load_meta(self, raw: bytes) -> dict[str, Any]:
        try:
            meta = json.loads((self.state_dir / "current.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(raw).hexdigest():
            return {}  # written for another file (a crash between the two writes): no conditional request
        return meta

    def _save(self, accepted: _Accepted) -> None:
        """Keep the accepted config and its fetch metadata, each written atomically; errors are logged."""
        meta = {"sha256": hashlib.sha256(accepted.raw).hexdigest(), "etag": accepted.etag,
                "last_modified": accepted.last_modified, "accepted_at": accepted.accepted_at,
                "url": self.settings.url, "version": accepted.envelope.version}
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.state_dir / "current.yaml", accepted.raw)
            _write_atomic(self.state_dir / "current.json", json.dumps(meta, indent=1).encode("utf-8"))
        except OSError as err:
            log.error("cannot keep the accepted config as last known good", extra={"kv": {
                "dir": str(self.state_dir), "err": str(err)}})

    def _report(self, source: str, config: Config, accepted: _Accepted) -> None:
        self.status.running(source, config.sha256, str(accepted.envelope.version), accepted.accepted_at)

    def _source_name(self, accepted: _Accepted) -> str:
        return f"{self.settings.url} (version {accepted.envelope.version})"

    def _succeeded(self) -> None:
        self.status.last_success = time.time()
        if self._last_failure is not None:
            log.info("config fetch works again", extra={"kv": {"url": self.settings.url}})
            self._last_failure = None

    def _failed(self, refused: Refused) -> None:
        """Count every failure; log a failure once until it changes or a fetch succeeds."""
        self.status.failures[refused.reason] = self.status.failures.get(refused.reason, 0) + 1
        key = (refused.reason, str(refused))
        if key != self._last_failure:
            log.warning("central config not accepted; keeping the running config", extra={"kv": {
                "url": self.settings.url, "reason": refused.reason, "err": str(refused)}})
            self._last_failure = key


def _expected_office(bootstrap: Config) -> str:
    settings = bootstrap.model.config_source
    return (settings.org_id if settings is not None and settings.org_id else None) or bootstrap.office.org_id


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)
