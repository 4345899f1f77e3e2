"""The agent's YAML config: pydantic models, loading, and errors that name their YAML path and line."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import GenericAlias
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from agent.durations import Duration as Duration
from agent.durations import format_duration as format_duration
from agent.durations import parse_duration as parse_duration
from agent.errors import ConfigError, ConfigIssue
from agent.secrets import Secret as Secret
from agent.secrets import SecretValue as SecretValue
from agent.yamlsource import format_path as format_path
from agent.yamlsource import line_of, read_yaml
from collectors import COLLECTORS
from collectors._tls import TlsConfig

SERVICES = ("wan", "dms", "portal", "mail", "onestop", "publicservice", "lgsp", "dns", "host", "other")
DEFAULT_HIERARCHY = {"name": "qn-2012", "levels": ["province", "district", "commune"]}
DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9470"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=128)]


class Office(_Model):
    """Who this agent speaks for: Decision 20/2020 agency code, name, level and parent."""

    org_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    level: Annotated[str, Field(min_length=1, max_length=64)]
    parent_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)] | None = None
    admin_code: Annotated[str, Field(max_length=32)] | None = None


class Hierarchy(_Model):
    """A versioned list of administrative levels, top first (levels are data, not code)."""

    name: Name = "qn-2012"
    levels: Annotated[list[Name], Field(min_length=1, max_length=8)] = DEFAULT_HIERARCHY["levels"]  # type: ignore[assignment]

    @model_validator(mode="after")
    def _unique_levels(self) -> Hierarchy:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("levels must be unique")
        return self


class Web(_Model):
    """Where the HTTP endpoints listen, and how they are secured."""

    listen_address: Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$")] = (
        DEFAULT_LISTEN_ADDRESS
    )
    config_file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """exporter-toolkit web config (TLS, basic auth, headers); relative to this file; --web.config.file overrides."""
    idle_timeout: Annotated[Duration, Field(ge=1.0, le=3600.0)] = 30.0
    """A connection idle this long, or still sending its request headers (slowloris), is closed."""


class AgentSection(_Model):
    """Process-wide limits."""

    max_concurrent_runs: Annotated[int, Field(ge=1, le=10000)] = 64
    state_dir: Annotated[str, Field(min_length=1, max_length=4096)] = "/var/lib/egov-agent"
    """Where the agent keeps state across restarts (the remote-write queues)."""


class ConfigSourceSettings(_Model):
    """Fetch this office's signed config from the province (agent/config_source.py); this file is the bootstrap."""

    url: Annotated[str, Field(pattern=r"^https://[^\s/?#@]+(/\S*)?$", max_length=2048)]
    """HTTPS URL of this office's signed config, e.g. https://config.province.example/signed/<org_id>.yaml."""
    public_key: Annotated[str, Field(min_length=1, max_length=4096)]
    """File with the province's Ed25519 public key(s): PEM blocks or raw base64, one per line."""
    org_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)] | None = None
    """The office the fetched config must be signed for; default office.org_id."""
    interval: Annotated[Duration, Field(ge=1.0)] = 300.0
    jitter: Duration | None = None
    """Each poll waits interval plus a random 0..jitter (default interval/10): a fleet does not poll all at once."""
    timeout: Annotated[Duration, Field(le=300.0)] = 10.0
    max_bytes: Annotated[int, Field(ge=1024, le=64 * 2**20),
                         WithJsonSchema({"type": ["string", "integer"], "examples": ["1MiB", "512KiB"]})] = 2**20
    """A bigger download is refused (too_large); 512KiB, 1MiB or a number of bytes."""
    tls: TlsConfig | None = None
    """Named CA (ca_file), optional client certificate (cert_file, key_file), server_name, min_version."""

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        from exporters.remote_write.config import parse_size

        return parse_size(value)

    @model_validator(mode="after")
    def _usable(self) -> ConfigSourceSettings:
        from agent.signing import load_public_keys

        if self.timeout >= self.interval:
            raise ValueError("timeout must be shorter than interval")
        if self.jitter is not None and self.jitter > self.interval:
            raise ValueError("jitter must not be longer than interval")
        if self.tls is not None and self.tls.insecure_skip_verify:
            raise ValueError("tls.insecure_skip_verify is refused here: name the province's CA in tls.ca_file")
        load_public_keys(self.public_key)
        return self


class Check(_Model):
    """A module run against targets at an interval, tagged with a service."""

    name: Name
    module: Name
    service: Literal["wan", "dms", "portal", "mail", "onestop", "publicservice", "lgsp", "dns", "host", "other"]
    targets: Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]], Field(min_length=1)]
    interval: Duration = 60.0
    auth: Name | None = None
    """A name from `auths:` (or the built-in public_v2), for kinds that take one (snmp)."""

    @model_validator(mode="after")
    def _unique_targets(self) -> Check:
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets must be unique within a check")
        return self


@cache
def module_model() -> Any:
    """The discriminated union of every kind's module model, built from the collector registry."""
    variants = []
    for kind, spec in COLLECTORS.items():
        with warnings.catch_warnings():
            # A kind named like a class attribute (register: ABCMeta.register) still works as a field: the
            # instance's value wins over the class's method.
            warnings.filterwarnings("ignore", message="Field name .* shadows an attribute", category=UserWarning)
            variant = create_model(
                f"{kind.capitalize()}Module",
                __base__=_Model,
                kind=(Literal[kind], ...),
                timeout=(Duration, 10.0),
                **{kind: (spec.settings, _settings_default(spec.settings))},  # type: ignore[call-overload]
            )
        variants.append(variant)
    return Annotated[_union(variants), Field(discriminator="kind")]


def _auths_type() -> Any:
    """dict[name, <auth union>] for the top-level `auths:`."""
    return GenericAlias(dict, (Name, _auth_union()))


def _auth_union() -> Any:
    """The union of the kinds' auth models (today snmp's only), for the top-level `auths:`."""
    models = [spec.auth_model for spec in COLLECTORS.values() if spec.auth_model is not None]
    return _union(models) if models else dict[str, Any]


@cache
def builtin_auths() -> dict[str, Any]:
    """Auths usable with no `auths:` entry (public_v2: community public, SNMP v2c, as snmp_exporter ships)."""
    adapter: TypeAdapter[Any] = TypeAdapter(_auth_union())
    return {name: adapter.validate_python(body) for spec in COLLECTORS.values()
            for name, body in spec.builtin_auths.items()}


def _settings_default(settings: type[BaseModel]) -> Any:
    """A kind's settings block may be left out only when every setting has a default."""
    if any(field.is_required() for field in settings.model_fields.values()):
        return ...
    return Field(default_factory=settings)


def _modules_type(key: Any) -> Any:
    """dict[key, <module union>], built at run time from the registry."""
    return GenericAlias(dict, (key, module_model()))


def _union(variants: list[Any]) -> Any:
    if len(variants) == 1:
        return variants[0]
    union = variants[0]
    for variant in variants[1:]:
        union = union | variant
    return union


@cache
def config_model() -> type[BaseModel]:
    """The whole config file's model."""
    from exporters.remote_write.config import RemoteWriteConfig

    return create_model(
        "AgentConfig",
        __base__=_Model,
        office=(Office, ...),
        hierarchy=(Hierarchy, Field(default_factory=Hierarchy)),
        web=(Web, Field(default_factory=Web)),
        agent=(AgentSection, Field(default_factory=AgentSection)),
        modules=(_modules_type(Name), Field(default_factory=dict)),
        checks=(list[Check], Field(default_factory=list)),
        auths=(_auths_type(), Field(default_factory=dict)),
        remote_write=(list[RemoteWriteConfig], Field(default_factory=list)),
        config_source=(ConfigSourceSettings | None, None),
    )


class Config:
    """A validated config: the parsed model plus the built-in modules it may use."""

    def __init__(self, model: Any, source: str, raw_sha256: str) -> None:
        self.model = model
        self.source = source
        self.sha256 = raw_sha256
        self.office: Office = model.office
        self.hierarchy: Hierarchy = model.hierarchy
        self.web: Web = model.web
        self.agent: AgentSection = model.agent
        self.checks: list[Check] = model.checks
        self.remote_write: list[Any] = model.remote_write
        self.modules: dict[str, Any] = {**builtin_modules(), **model.modules}
        self.auths: dict[str, Any] = {**builtin_auths(), **model.auths}

    def warnings(self) -> list[str]:
        """Weak but allowed settings of the modules this config defines or its checks use, with their YAML path."""
        used = {check.module for check in self.checks} | set(self.model.modules)
        found = []
        for name in sorted(used):
            module = self.modules.get(name)
            if module is None:
                continue
            spec = COLLECTORS[module.kind]
            if spec.warnings is not None:
                where = f"modules.{name}" if name in self.model.modules else f"built-in module {name}"
                found += [f"{where}: {message}" for message in spec.warnings(getattr(module, module.kind))]
        return found

    def check_fingerprint(self, check: Check) -> str:
        """A digest of everything that decides how a check runs, to find what a reload changed."""
        module = self.modules[check.module]
        auth = self.auths[check.auth].model_dump(mode="json") if check.auth else None
        payload = json.dumps(
            [check.model_dump(mode="json"), module.model_dump(mode="json"), auth], sort_keys=True, default=repr
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@cache
def builtin_modules() -> dict[str, Any]:
    """Modules usable with no config file, validated once."""
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(_modules_type(str))
    raw = {name: body for spec in COLLECTORS.values() for name, body in spec.builtin_modules.items()}
    return adapter.validate_python(raw)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError listing every issue with its YAML path."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(source, [ConfigIssue("", f"cannot read config: {err.strerror or err}")]) from None
    return parse_config(raw, source)


def parse_config(raw: bytes, source: str) -> Config:
    """Validate config text; raises ConfigError listing every issue with its YAML path and line."""
    data, root = read_yaml(raw, source)
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the config must be a YAML mapping (office:, checks:, ...)")])
    try:
        model: Any = config_model().model_validate(data)
    except ValidationError as err:
        # Report the cross-reference problems of the parts that did validate too: all errors at once.
        issues = [_issue(e, root) for e in err.errors()]
        raise ConfigError(source, issues + _cross_checks(_valid_parts(data), root)) from None
    issues = _cross_checks(_Parts(model.office, model.hierarchy, dict(model.modules), set(model.modules),
                                  list(enumerate(model.checks)), list(enumerate(model.remote_write)),
                                  set(model.auths)), root)
    if issues:
        raise ConfigError(source, issues)
    return Config(model, source, hashlib.sha256(raw).hexdigest())


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, as written to config/schema.json."""
    schema = config_model().model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "egov-agent configuration"
    return schema


@dataclass
class _Parts:
    """The parts of a config that validated on their own, for the checks that span several parts."""

    office: Office | None
    hierarchy: Hierarchy
    modules: dict[str, Any]
    module_names: set[str]
    checks: list[tuple[int, Check]]
    remote_write: list[tuple[int, Any]]
    auth_names: set[str]


def _valid_parts(data: dict[str, Any]) -> _Parts:
    def valid(model: Any, value: Any) -> Any:
        try:
            return model.validate_python(value)
        except ValidationError:
            return None

    office = valid(TypeAdapter(Office), data.get("office"))
    hierarchy = valid(TypeAdapter(Hierarchy), data.get("hierarchy", {})) or Hierarchy()
    raw_modules: dict[Any, Any] = data["modules"] if isinstance(data.get("modules"), dict) else {}
    module_adapter: TypeAdapter[Any] = TypeAdapter(module_model())
    modules = {name: m for name, body in raw_modules.items() if (m := valid(module_adapter, body)) is not None}
    raw_checks: list[Any] = data["checks"] if isinstance(data.get("checks"), list) else []
    check_adapter = TypeAdapter(Check)
    checks = [(i, c) for i, body in enumerate(raw_checks) if (c := valid(check_adapter, body)) is not None]
    from exporters.remote_write.config import RemoteWriteConfig

    raw_remote: list[Any] = data["remote_write"] if isinstance(data.get("remote_write"), list) else []
    remote_adapter = TypeAdapter(RemoteWriteConfig)
    remote = [(i, r) for i, body in enumerate(raw_remote) if (r := valid(remote_adapter, body)) is not None]
    raw_auths: dict[Any, Any] = data["auths"] if isinstance(data.get("auths"), dict) else {}
    return _Parts(office, hierarchy, modules, {str(name) for name in raw_modules}, checks, remote,
                  {str(name) for name in raw_auths})


def _cross_checks(parts: _Parts, root: yaml.Node | None) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    office, hierarchy = parts.office, parts.hierarchy
    if office is None:
        pass
    elif office.level not in hierarchy.levels:
        issues.append(
            _at(root, ("office", "level"), f"level {office.level!r} is not in hierarchy {hierarchy.name!r} "
                f"({', '.join(hierarchy.levels)})")
        )
    elif office.level != hierarchy.levels[0] and not office.parent_id:
        issues.append(_at(root, ("office",), f"an office at level {office.level!r} needs a parent_id"))
    declared: dict[str, tuple[str, Any]] = {}
    for name, module in parts.modules.items():
        spec = COLLECTORS[module.kind]
        settings = getattr(module, module.kind)
        if spec.check_module is not None:
            try:
                spec.check_module(settings, module.timeout)
            except ValueError as err:
                issues.append(_at(root, ("modules", name), str(err)))
        if spec.settings_metrics is not None:
            issues += _settings_metric_issues(root, name, spec, settings, declared)
    modules = {**builtin_modules(), **parts.modules}
    known = set(modules) | parts.module_names
    seen: dict[str, int] = {}
    for index, check in parts.checks:
        if check.name in seen:
            message = f"duplicate check name {check.name!r} (also checks[{seen[check.name]}])"
            issues.append(_at(root, ("checks", index, "name"), message))
        seen.setdefault(check.name, index)
        module = modules.get(check.module)
        auths = set(builtin_auths()) | parts.auth_names
        if check.auth is not None and check.auth not in auths:
            message = f"unknown auth {check.auth!r}; known: {', '.join(sorted(auths))}"
            issues.append(_at(root, ("checks", index, "auth"), message))
        if module is None:
            if check.module not in known:
                message = f"unknown module {check.module!r}; known: {', '.join(sorted(known))}"
                issues.append(_at(root, ("checks", index, "module"), message))
            continue
        if check.auth is not None and COLLECTORS[module.kind].with_auth is None:
            message = f"module {check.module!r} is of kind {module.kind}, which takes no auth"
            issues.append(_at(root, ("checks", index, "auth"), message))
        if module.timeout >= check.interval:
            issues.append(
                _at(root, ("checks", index, "interval"),
                    f"interval {format_duration(check.interval)} must be longer than module {check.module!r} "
                    f"timeout {format_duration(module.timeout)}")
            )
        spec = COLLECTORS[module.kind]
        if spec.check_target is not None:
            for t_index, target in enumerate(check.targets):
                try:
                    spec.check_target(target, getattr(module, module.kind))
                except ValueError as err:
                    issues.append(_at(root, ("checks", index, "targets", t_index), str(err)))
    destinations: dict[str, int] = {}
    for index, remote in parts.remote_write:
        name = remote.destination
        if name in destinations:
            issues.append(_at(root, ("remote_write", index),
                              f"destination {name!r} is already remote_write[{destinations[name]}]; give each "
                              "destination a unique name (it names the queue directory)"))
        destinations.setdefault(name, index)
    return issues


def _settings_metric_issues(
    root: yaml.Node | None, name: str, spec: Any, settings: Any, declared: dict[str, tuple[str, Any]]
) -> list[ConfigIssue]:
    """Metrics a module names itself must not clash within it, nor in type with another module's of the same name."""
    try:
        catalog = spec.catalog_for(settings)
    except ValueError as err:
        return [_at(root, ("modules", name), str(err))]
    issues = []
    for metric in spec.settings_metrics(settings):
        first = declared.setdefault(metric.name, (name, catalog[metric.name]))
        if first[1].type != catalog[metric.name].type:
            issues.append(_at(root, ("modules", name), f"metric {metric.name!r} is also declared by module "
                              f"{first[0]!r}, as a {first[1].type}"))
    return issues


def _issue(error: Any, root: yaml.Node | None) -> ConfigIssue:
    loc = _strip_union_tags(tuple(error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "missing required key"
    elif kind == "union_tag_invalid":
        message = f"unknown kind {error.get('ctx', {}).get('tag')!r}; known: {', '.join(sorted(COLLECTORS))}"
    elif kind == "union_tag_not_found":
        message = f"missing key 'kind' (one of: {', '.join(sorted(COLLECTORS))})"
    elif kind == "literal_error" and loc and loc[-1] == "service":
        message = f"unknown service {error.get('input')!r}; one of: {', '.join(SERVICES)}"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return _at(root, loc, message)


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts the discriminator value into the path (modules.x.http.timeout); users never wrote it."""
    if len(loc) >= 3 and loc[0] == "modules" and loc[2] in COLLECTORS:
        return loc[:2] + loc[3:]
    return loc


def _at(root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> ConfigIssue:
    return ConfigIssue(format_path(loc), message, line_of(root, loc))


