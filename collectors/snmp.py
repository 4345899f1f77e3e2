"""SNMP polling of routers and switches with snmp_exporter's modules, metric names and snmp_scrape_* metrics."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)

from agent.errors import ProbeError, ProtocolError
from collectors import _resolve
from collectors import _snmp_link as _link
from collectors._lru import LruMap
from collectors._snmp_ber import Oid, VarBind, format_oid
from collectors._snmp_catalogue import MODULES as _NETWORK_MODULES
from collectors._snmp_catalogue_devices import MODULES as _DEVICE_MODULES
from collectors._snmp_module import FilterDef, MetricDef, OidText, Plan, apply_filters, compile_plan, render
from collectors._snmp_session import AuthFailed, RowCapExceeded, RowLimit, Session, get, walk
from collectors._snmp_usm import AuthProtocol, PrivProtocol, SecurityLevel, Usm, have_cryptography
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

if TYPE_CHECKING:
    from agent.config import Secret as SecretField

SUBTREE_METRICS = (
    MetricSpec("egov_snmp_subtree_success", "gauge",
               "Whether the get or the walk of this subtree succeeded; the others are reported when one fails.",
               ("subtree",)),
)
SCRAPE_METRICS = (
    MetricSpec("snmp_scrape_walk_duration_seconds", "gauge", "Time SNMP walk/bulkwalk took."),
    MetricSpec("snmp_scrape_packets_sent", "gauge", "Packets sent for get, bulkget, and walk; including retries."),
    MetricSpec("snmp_scrape_packets_retried", "gauge", "Packets retried for get, bulkget, and walk."),
    MetricSpec("snmp_scrape_pdus_returned", "gauge", "PDUs returned from get, bulkget, and walk."),
    MetricSpec("snmp_scrape_duration_seconds", "gauge", "Total SNMP time scrape took (walk and processing)."),
)
DEFAULT_PORT = 161
_RELEASE_SLICE = 1024
_LOOKUP_CACHE: LruMap[tuple[str, str, Oid | None], tuple[int, list[VarBind]]] = LruMap(4096)
"""(check, target, root) -> (runs it may still serve, varbinds): lookup-only walks, least recently used first."""
_OWN_PREFIXES = ("snmp_", "egov_", "probe_")


if not TYPE_CHECKING:

    class SecretField:
        """agent.config.SecretValue, looked up when the schema is built (agent.config imports this package)."""

        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
            from agent.config import SecretValue

            return handler.generate_schema(SecretValue)


def _redact_community(value: Any) -> Any:
    if isinstance(value, str):  # never the community itself, but still a different fingerprint when it changes
        return f"<secret sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]}>"
    return {"source": value.source}


def _duration(value: object) -> float:
    from agent.config import parse_duration

    return value if isinstance(value, int | float) and not isinstance(value, bool) else parse_duration(value)


def _format_duration(value: float) -> str:
    from agent.config import format_duration

    return format_duration(value)


Community = Annotated[str | SecretField, PlainSerializer(_redact_community)]
RequestTimeout = Annotated[
    float, BeforeValidator(_duration), PlainSerializer(_format_duration, return_type=str), Field(gt=0, le=60),
    WithJsonSchema({"type": "string", "pattern": r"^((\d+(\.\d+)?)(ms|s|m))+$",
                    "description": "Per request, as snmp_exporter's; each wait also ends with the run's deadline"}),
]


class _Deferred(Settings):
    # Built on first use, after agent.config (where SecretValue lives) has been imported.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SnmpAuth(_Deferred):
    """snmp_exporter's auth: version, community or v3 user with explicit protocols; secrets from files or env."""

    version: Literal[1, 2, 3] = 2
    community: Community = Field(default="public", repr=False)
    username: Annotated[str, Field(max_length=32)] = ""
    security_level: SecurityLevel = "noAuthNoPriv"
    password: SecretField | None = None
    auth_protocol: AuthProtocol | None = None
    priv_protocol: PrivProtocol | None = None
    priv_password: SecretField | None = None
    context_name: Annotated[str, Field(max_length=32)] = ""

    @model_validator(mode="after")
    def _consistent(self) -> SnmpAuth:
        v3_fields = {"username", "security_level", "password", "auth_protocol", "priv_protocol", "priv_password",
                     "context_name"} & self.model_fields_set
        if self.version != 3:
            if v3_fields:
                raise ValueError(f"{', '.join(sorted(v3_fields))} only apply to version 3")
            if not _reveal(self.community):
                raise ValueError("community must not be empty")
            return self
        if "community" in self.model_fields_set:
            raise ValueError("community only applies to versions 1 and 2; version 3 uses username")
        if not self.username:
            raise ValueError("version 3 needs a username")
        level = self.security_level
        wants_auth, wants_priv = level != "noAuthNoPriv", level == "authPriv"
        for name, needed in (("auth_protocol", wants_auth), ("password", wants_auth),
                             ("priv_protocol", wants_priv), ("priv_password", wants_priv)):
            given = getattr(self, name) is not None
            if needed and not given:
                raise ValueError(f"security_level {level} needs {name} (protocols are never defaulted)")
            if given and not needed:
                raise ValueError(f"{name} is given but security_level is {level}")
        for name in ("password", "priv_password"):
            secret = getattr(self, name)
            if secret is not None and len(secret.reveal()) < 8:
                raise ValueError(f"{name} is shorter than 8 characters, which devices refuse")
        if wants_priv and not have_cryptography():
            raise ValueError("authPriv requires the 'cryptography' package (pip install cryptography)")
        return self

    def insecure(self) -> list[str]:
        """What `check-config` should warn about: v1/v2c, noAuthNoPriv, MD5 and DES."""
        if self.version != 3:
            return [f"SNMP version {self.version} sends the community in clear text; prefer version 3 authPriv"]
        reasons = []
        if self.security_level == "noAuthNoPriv":
            reasons.append("security_level noAuthNoPriv neither authenticates nor encrypts")
        elif self.security_level == "authNoPriv":
            reasons.append("security_level authNoPriv does not encrypt")
        if self.auth_protocol == "MD5":
            reasons.append("auth_protocol MD5 is obsolete; use SHA256 or better")
        if self.priv_protocol == "DES":
            reasons.append("priv_protocol DES is obsolete; use AES")
        return reasons

    def usm(self) -> Usm | None:
        """The v3 security model for this user, None for v1/v2c."""
        if self.version != 3:
            return None
        return Usm(self.username, self.security_level, self.auth_protocol, _reveal(self.password),
                   self.priv_protocol, _reveal(self.priv_password), self.context_name)


def _known_catalogue_module(name: str) -> str:
    if name not in CATALOGUE:
        raise ValueError(f"unknown catalogue module {name!r}; known: {', '.join(sorted(CATALOGUE))}")
    return name


class SnmpSettings(_Deferred):
    """A module in snmp_exporter's format (walk, get, metrics, walk parameters) plus its auth.

    `include` adds built-in catalogue modules; with no metrics and no include, the module is `if_mib`.
    """

    auth: SnmpAuth = Field(default_factory=SnmpAuth)
    include: list[Annotated[str, AfterValidator(_known_catalogue_module)]] | None = None
    walk: list[OidText] = Field(default_factory=list)
    get: list[OidText] = Field(default_factory=list)
    metrics: list[MetricDef] = Field(default_factory=list)
    filters: list[FilterDef] = Field(default_factory=list)
    """Dynamic filters in snmp_exporter's form, e.g. only the rows of interfaces whose ifAdminStatus is 1 (up)."""
    max_repetitions: Annotated[int, Field(ge=1, le=255)] = 25
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    timeout: RequestTimeout = Field(default=5.0, json_schema_extra={"default": "5s"})
    allow_nonincreasing_oids: bool = False
    max_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    lookup_cache_runs: Annotated[int, Field(ge=1, le=1000)] = 1
    """Walk the roots that hold only lookup columns (ifName, ifAlias, ...) every this many runs; 1 = every run."""
    link_health: bool = True
    """Utilization and state changes per interface, when the module walks if_mib's ifTable with its lookups."""
    _plan: Plan | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _plan_fits(self) -> SnmpSettings:
        included = self.include if self.include is not None else ([] if self.metrics else ["if_mib"])
        get_oids = [oid for name in included for oid in CATALOGUE[name].get("get", [])] + self.get
        walk_oids = [oid for name in included for oid in CATALOGUE[name]["walk"]] + self.walk
        metrics = [_catalogue_metric(name, i) for name in included
                   for i in range(len(CATALOGUE[name]["metrics"]))] + self.metrics
        walk_oids += [f.oid for f in self.filters if not any(_within(f.oid, root) for root in walk_oids)]
        plan = self._plan = compile_plan(get_oids, walk_oids, metrics)
        if not plan.metrics:
            raise ValueError("the module has no metrics; list them or include a catalogue module")
        if not plan.get and not plan.walk:
            raise ValueError("the module neither walks nor gets anything")
        for spec in plan.specs:
            known = CATALOGUE_SPECS.get(spec.name)
            if known is not None and known.type != spec.type:
                raise ValueError(f"metric {spec.name!r} is a catalogue {known.type}; it cannot be a {spec.type}")
            if spec.name.startswith(_OWN_PREFIXES):
                raise ValueError(f"metric {spec.name!r}: names starting with {' or '.join(_OWN_PREFIXES)} are the "
                                 "agent's own")
        return self

    def plan(self) -> Plan:
        """The module compiled for runs, once, when the settings were validated."""
        assert self._plan is not None
        return self._plan


async def probe_snmp(ctx: ProbeContext, settings: SnmpSettings) -> bool:
    """Get and walk the module's OIDs on the target (one request in flight) and export its metrics."""
    host, port = split_target(ctx.target)
    address = await _resolve.resolve(ctx, host, "ip4", True)
    if address is None:
        return False
    plan = settings.plan()
    loop = asyncio.get_running_loop()
    started = loop.time()
    community = _reveal(settings.auth.community).encode()
    session = Session(ctx, address, port, settings.auth.version, community, settings.auth.usm(), settings.timeout,
                      settings.retries)
    rows = RowLimit(settings.max_rows)
    varbinds: list[VarBind] = []
    failed: list[tuple[str, ProbeError]] = []
    parts: list[tuple[str, Oid | None]] = [("get", None)] if plan.get else []
    parts += [(format_oid(root), root) for root in plan.walk]
    try:
        async with session:
            for name, root in parts:
                cache_key = (ctx.check, ctx.target, root)
                cached = _LOOKUP_CACHE.get(cache_key) if root in plan.lookup_only else None
                if cached is not None and cached[0] > 0:
                    _LOOKUP_CACHE.put(cache_key, (cached[0] - 1, cached[1]))
                    rows.take(len(cached[1]))
                    ctx.log("%s: %d varbinds from the lookup cache", name, len(cached[1]))
                    varbinds += cached[1]
                    continue
                try:
                    if root is None:
                        found = await get(session, plan.get, settings.max_repetitions, rows)
                    else:
                        found = await walk(session, root, settings.max_repetitions, rows,
                                           settings.allow_nonincreasing_oids)
                        if root in plan.lookup_only and settings.lookup_cache_runs > 1:
                            _LOOKUP_CACHE.put(cache_key, (settings.lookup_cache_runs - 1, found))
                except ProbeError as err:
                    if not _subtree_only(err):
                        raise
                    failed.append((name, err))
                    ctx.count_partial_error("subtree")
                    ctx.log("%s failed, the other subtrees are still reported: %s", name, err, level="warning")
                    continue
                ctx.log("%s: %d varbinds", name, len(found))
                varbinds += found
    except ProbeError as err:
        _scrape_metrics(ctx, session, len(varbinds), loop.time() - started)
        return ctx.fail(err.outcome, "%s", err)
    _scrape_metrics(ctx, session, len(varbinds), loop.time() - started)
    for name, _ in parts:
        ctx.sink.add("egov_snmp_subtree_success", 0 if any(name == bad for bad, _ in failed) else 1, name)
    if len(failed) == len(parts):
        return ctx.fail(failed[0][1].outcome, "every subtree failed; first %s: %s", failed[0][0], failed[0][1])
    if settings.filters:
        varbinds = await apply_filters(settings.filters, varbinds)
    pdus, label_rows = await render(plan, varbinds, ctx.sink)
    if settings.link_health and _link.applies(plan):
        await _link.record((ctx.check, ctx.target), plan, pdus, label_rows, ctx.sink)
    ctx.sink.add("snmp_scrape_duration_seconds", loop.time() - started)
    if session.dropped:
        ctx.log("dropped %d datagrams that were not the awaited response", session.dropped, level="warning")
    pdus.clear()
    label_rows.clear()
    await _release(varbinds)
    return True


def _within(oid: str, root: str) -> bool:
    """Whether the OID (dotted text) lies in the subtree of root."""
    return oid == root or oid.startswith(root + ".")


def _subtree_only(err: ProbeError) -> bool:
    """An error that spoils one subtree (an error-status, a view that hides it), not the device or the run."""
    if isinstance(err, AuthFailed):
        return err.reason == "authorization_error"
    return isinstance(err, ProtocolError) and not isinstance(err, RowCapExceeded)


def split_target(target: str) -> tuple[str, int]:
    """`[udp://]host[:port]` (IPv6 in brackets) to (host, port); ValueError for anything else."""
    rest = target
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme != "udp":
            raise ValueError(f"target {target!r}: only udp:// is supported for SNMP")
    rest = rest.rstrip("/")
    port_text = ""
    if rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        if after and not after.startswith(":"):
            raise ValueError(f"target {target!r} is not [IPv6]:port")
        port_text = after[1:]
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host = rest
    if not host or "/" in host or "@" in host:
        raise ValueError(f"target {target!r} is not [udp://]host[:port]")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"target {target!r} has an invalid port")
    return host, int(port_text) if port_text else DEFAULT_PORT


def module_metrics(settings: SnmpSettings) -> list[MetricSpec]:
    """The metrics a user module names beyond the catalogue's (CollectorSpec.settings_metrics)."""
    return [spec for spec in settings.plan().specs if CATALOGUE_SPECS.get(spec.name) != spec]


def check_snmp_target(target: str, settings: SnmpSettings) -> None:
    """The target must be `[udp://]host[:port]`."""
    split_target(target)


def insecure_settings(settings: SnmpSettings) -> list[str]:
    """Warnings for check-config: what in this module's auth is weak (v1/v2c, noAuthNoPriv, MD5, DES)."""
    return settings.auth.insecure()


def _catalogue_metric(module: str, index: int) -> MetricDef:
    key = (module, index)
    metric = _CATALOGUE_METRICS.get(key)
    if metric is None:
        metric = _CATALOGUE_METRICS[key] = MetricDef.model_validate(CATALOGUE[module]["metrics"][index])
    return metric


def _catalogue_specs() -> dict[str, MetricSpec]:
    specs: dict[str, MetricSpec] = {}
    for name, module in CATALOGUE.items():
        for index in range(len(module["metrics"])):
            spec = _catalogue_metric(name, index).output()
            if specs.setdefault(spec.name, spec) != spec:
                raise RuntimeError(f"catalogue metric {spec.name} is declared twice differently")
    return specs


async def _release(varbinds: list[Any]) -> None:
    """Free a large walk a slice at a time: freeing 100k objects at once would stall the event loop."""
    while len(varbinds) > _RELEASE_SLICE:
        del varbinds[-_RELEASE_SLICE:]
        await asyncio.sleep(0)
    varbinds.clear()


def _scrape_metrics(ctx: ProbeContext, session: Session, pdus: int, walked: float) -> None:
    ctx.sink.add("snmp_scrape_walk_duration_seconds", walked)
    ctx.sink.add("snmp_scrape_packets_sent", session.packets_sent)
    ctx.sink.add("snmp_scrape_packets_retried", session.packets_retried)
    ctx.sink.add("snmp_scrape_pdus_returned", pdus)


def _reveal(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value.reveal())


_CATALOGUE_METRICS: dict[tuple[str, int], MetricDef] = {}
CATALOGUE: dict[str, dict[str, Any]] = {**_NETWORK_MODULES, **_DEVICE_MODULES}
CATALOGUE_SPECS = _catalogue_specs()

METRICS = (*SCRAPE_METRICS, *SUBTREE_METRICS, *_resolve.METRICS, *_link.METRICS, *CATALOGUE_SPECS.values())

SPEC = CollectorSpec(
    kind="snmp",
    settings=SnmpSettings,
    probe=probe_snmp,
    metrics=METRICS,
    builtin_modules={name: {"kind": "snmp", "timeout": "10s", "snmp": {"include": [name]}} for name in CATALOGUE},
    check_target=check_snmp_target,
    auth_model=SnmpAuth,
    with_auth=lambda settings, auth: settings.model_copy(update={"auth": auth}),
    builtin_auths={"public_v2": {}},
    warnings=insecure_settings,
    settings_metrics=module_metrics,
)
