"""HTTP(S) checks with blackbox_exporter's http prober meaning, plus value extraction and multi-step flows."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent import __version__
from agent.errors import Outcome, ProbeError
from agent.secrets import Secret, SecretValue
from collectors import _resolve, _tls
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

if TYPE_CHECKING:

    from collectors._http_client import URL, Client, Exchange

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
MAX_REDIRECTS = 10
USER_AGENT = f"egov-agent/{__version__}"

METRICS = (
    MetricSpec("probe_http_duration_seconds", "gauge", "Duration of http request by phase, summed over all redirects",
               ("phase",)),
    MetricSpec("probe_http_content_length", "gauge", "Length of http content response"),
    MetricSpec("probe_http_uncompressed_body_length", "gauge", "Length of uncompressed response body"),
    MetricSpec("probe_http_redirects", "gauge", "The number of redirects"),
    MetricSpec("probe_http_ssl", "gauge", "Indicates if SSL was used for the final redirect"),
    MetricSpec("probe_http_status_code", "gauge", "Response HTTP status code"),
    MetricSpec("probe_http_version", "gauge", "Returns the version of HTTP of the probe response"),
    MetricSpec("probe_failed_due_to_regex", "gauge", "Indicates if probe failed due to regex"),
    MetricSpec("probe_http_last_modified_timestamp_seconds", "gauge",
               "Returns the Last-Modified HTTP response header in unixtime"),
    MetricSpec("egov_http_extracted_value", "gauge",
               "A number taken from the response body by a configured JSON path or regex count.", ("name",)),
    MetricSpec("egov_http_step_duration_seconds", "gauge", "Duration of one step of a multi-step HTTP check.",
               ("step",)),
    MetricSpec("egov_http_step_success", "gauge", "1 if the step of a multi-step HTTP check passed, else 0.",
               ("step",)),
    *_resolve.METRICS,
    *_tls.METRICS,
)


def _compile(value: object) -> object:
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as err:
            raise ValueError(f"invalid regular expression: {err}") from None
    return value


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]i?B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(value: object) -> object:
    """blackbox's <size> (base 2: `10MB` is 10 MiB) or a plain number of bytes; never 0 (blackbox: no limit)."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            raise ValueError(f"invalid size {value!r}: a number of bytes or e.g. 512KB, 10MB, 1GB")
        value = int(match[1]) * _SIZE_UNITS[(match[2] or "")[:1].upper()]
    if value == 0:
        raise ValueError("0 (no limit) is not allowed: every body read is capped; give a size up to 1GB")
    return value


def _text_or_secret(value: object) -> object:
    if isinstance(value, str):
        return value
    try:
        return _SECRET.validate_python(value)
    except ValidationError as err:  # the secret's own message, without pydantic's wording around it
        raise ValueError(str(err.errors()[0]["msg"]).removeprefix("Value error, ")) from None


_SECRET: TypeAdapter[Secret] = TypeAdapter(SecretValue)
TextOrSecret = Annotated[
    str | Secret,
    PlainValidator(_text_or_secret),
    PlainSerializer(lambda v: v if isinstance(v, str) else {"source": v.source}),
    WithJsonSchema({"anyOf": [{"type": "string"}, _SECRET.json_schema()]}),
]
Regex = Annotated[re.Pattern[str], BeforeValidator(_compile)]
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=128)]
HeaderValue = Annotated[str, Field(pattern=r"^[^\r\n\x00]*$", max_length=8192)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
ByteSize = Annotated[
    int,
    BeforeValidator(_size),
    Field(ge=1, le=1 << 30),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": _SIZE_RE.pattern}]}),
]


class HeaderMatch(Settings):
    """blackbox's http_header_match_spec: a response header and a regex over its values."""

    header: HeaderName
    regexp: Regex
    allow_missing: bool = False


class Extract(Settings):
    """A number from the body as egov_http_extracted_value{name}: a JSON path's value or a regex's match count.

    Bad JSON, a missing path or a value that is not a number never fails the probe: the sample is left out, the
    run log says why, and egov_agent_collector_errors_total{kind="http",subsystem="extract"} counts it.
    """

    name: Identifier
    json_path: str | None = None
    count_regex: Regex | None = None

    @field_validator("json_path")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_json_path(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Extract:
        if (self.json_path is None) == (self.count_regex is None):
            raise ValueError("give exactly one of json_path and count_regex")
        return self


class HttpBasicAuth(Settings):
    """HTTP basic authentication; the password is a secret ({file: ...} or {env: ...})."""

    username: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^:\r\n]*$")]
    password: SecretValue


class HttpRequest(Settings):
    """What one request sends and what its response must look like (blackbox's http module options)."""

    method: Annotated[str, Field(pattern=r"^[A-Za-z]+$", max_length=16)] = "GET"
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict)
    body: TextOrSecret | None = None
    form: dict[Annotated[str, Field(min_length=1)], TextOrSecret] | None = None
    valid_status_codes: tuple[Annotated[int, Field(ge=100, le=599)], ...] = ()
    valid_http_versions: tuple[Annotated[str, Field(pattern=r"^HTTP/\d(\.\d)?$")], ...] = ()
    follow_redirects: bool = True
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    fail_if_body_matches_regexp: tuple[Regex, ...] = ()
    fail_if_body_not_matches_regexp: tuple[Regex, ...] = ()
    fail_if_header_matches: tuple[HeaderMatch, ...] = ()
    fail_if_header_not_matches: tuple[HeaderMatch, ...] = ()
    extract: tuple[Extract, ...] = ()

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == "authorization" for name in value):
            raise ValueError("no Authorization header in plain text: use basic_auth or bearer_token with a secret")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HttpRequest:
        if self.body is not None and self.form is not None:
            raise ValueError("body and form are mutually exclusive")
        if self.fail_if_ssl and self.fail_if_not_ssl:
            raise ValueError("fail_if_ssl and fail_if_not_ssl together fail every probe")
        return self

    @property
    def keeps_body(self) -> bool:
        """Whether the checks need the body itself, not only its length."""
        return bool(self.fail_if_body_matches_regexp or self.fail_if_body_not_matches_regexp or self.extract)


class HttpStep(HttpRequest):
    """One request of a multi-step check; its url is absolute or relative to the target."""

    name: Identifier
    url: Annotated[str, Field(min_length=1, max_length=2048)] = ""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme or parts.netloc:
            _check_url(value, "url")
        return value


class HttpSettings(HttpRequest):
    """Settings of the http kind: blackbox_exporter's http prober options, extraction and multi-step `steps`.

    Unlike blackbox, body_size_limit defaults to 10 MiB (every read is capped) and secrets are never inline.
    """

    tls_config: _tls.TlsConfig | None = None
    basic_auth: HttpBasicAuth | None = None
    bearer_token: SecretValue | None = None
    proxy_url: str | None = None
    preferred_ip_protocol: _resolve.IpProtocol = "ip6"
    ip_protocol_fallback: bool = True
    body_size_limit: ByteSize = 10 << 20
    compression: Literal["", "identity", "gzip", "deflate"] = ""
    steps: tuple[HttpStep, ...] = ()

    @field_validator("proxy_url")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value, "proxy_url")
        return value

    @model_validator(mode="after")
    def _rules(self) -> HttpSettings:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("basic_auth and bearer_token are mutually exclusive")
        if self.steps:
            request_only = set(HttpRequest.model_fields) - {"headers"}
            misplaced = sorted(request_only & self.model_fields_set)
            if misplaced:
                raise ValueError(f"with steps, {', '.join(misplaced)} go in each step (only headers apply to all)")
            names = [step.name for step in self.steps]
            if len(set(names)) != len(names):
                raise ValueError("step names must be unique")
        extracts = [item.name for request in self.requests() for item in request.extract]
        if len(set(extracts)) != len(extracts):
            raise ValueError("extract names must be unique within the module")
        for request in self.requests():
            accept = next((v for k, v in {**self.headers, **request.headers}.items()
                           if k.lower() == "accept-encoding"), None)
            if accept is not None and not _accepts(accept, self.compression):
                raise ValueError(f"Accept-Encoding {accept!r} does not accept compression {self.compression!r}")
        return self

    def requests(self) -> list[HttpRequest]:
        """The requests a run makes: the steps, or the module itself as the one request."""
        return list(self.steps) or [self]


async def probe_http(ctx: ProbeContext, settings: HttpSettings) -> bool:
    """Request the target (or run its steps) and check the responses, as blackbox_exporter's http prober does."""
    from collectors import _http_client  # aiohttp's client is loaded only when an http check runs

    run = _Run()
    try:
        return await _Prober(ctx, settings, run, _http_client).run()
    finally:
        _record(ctx, run)


def check_http_target(target: str, settings: HttpSettings) -> None:
    """The target must be an absolute http(s) URL without credentials in it."""
    _check_url(target, "target")


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """`data.items[0].count`, `$.a["b c"][-1]` -> keys and indexes; ValueError with the position otherwise."""
    text = path.strip()
    text = text[1:] if text.startswith("$") else text
    parts: list[str | int] = []
    position = 0
    while position < len(text):
        match = _PATH_TOKEN.match(text, position)
        if match is None or (match[1] is not None and position > 0 and text[position] != "."):
            raise ValueError(f"invalid json_path {path!r} at position {position}: use keys and [index], "
                             "e.g. data.items[0].count")
        key, index, quoted = match[1], match[2], match[3] if match[3] is not None else match[4]
        parts.append(int(index) if index is not None else quoted if quoted is not None else key)
        position = match.end()
    return tuple(parts)


SPEC = CollectorSpec(
    kind="http",
    settings=HttpSettings,
    probe=probe_http,
    metrics=METRICS,
    # blackbox's blackbox.yml: http_2xx prefers IPv4 there (office WAN links carry IPv4); both get example.yml's 5s.
    builtin_modules={
        "http_2xx": {"kind": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}},
        "http_post_2xx": {"kind": "http", "timeout": "5s", "http": {"method": "POST", "preferred_ip_protocol": "ip4"}},
    },
    check_target=check_http_target,
)


# ---------------------------------------------------------------------------------------------- private

_PATH_TOKEN = re.compile(r"""\.?([^.\[\]"']+)|\[(-?\d+)\]|\[(?:"([^"]*)"|'([^']*)')\]""")


@dataclass
class _Run:
    """What a run learned, recorded as metrics at the end whatever happened."""

    client: Client | None = None
    resolve: float = 0.0
    status: int = 0
    content_length: int = 0
    body_length: int = 0
    redirects: int = 0
    ssl: bool = False
    version: float = 0.0
    failed_due_to_regex: bool = False
    last_modified: float | None = None
    extracted: list[tuple[str, float]] = field(default_factory=list)
    steps: list[tuple[str, float, bool]] = field(default_factory=list)


class _Prober:
    """One run: resolve the target, send each request (following redirects), check and extract."""

    def __init__(self, ctx: ProbeContext, settings: HttpSettings, run: _Run, client_module: Any) -> None:
        self.ctx = ctx
        self.settings = settings
        self.run_state = run
        self.hc = client_module
        self.target: URL = client_module.URL(ctx.target)
        self.step = ""

    async def run(self) -> bool:
        ctx, settings, run = self.ctx, self.settings, self.run_state
        deadline = ctx.step_deadline()
        try:
            async with asyncio.timeout_at(deadline):
                started = time.perf_counter()
                address = await _resolve.resolve(ctx, self.target.host or "", settings.preferred_ip_protocol,
                                                 settings.ip_protocol_fallback)
                run.resolve = time.perf_counter() - started
                if address is None:
                    return False
                run.client = self.hc.Client(self.target.host, address, settings.preferred_ip_protocol,
                                            settings.ip_protocol_fallback)
                try:
                    for request in settings.requests():
                        if not await self._step(request):
                            return False
                finally:
                    await run.client.close()
        except TimeoutError:
            trips = run.client.trips if run.client else []
            doing = f" {trips[-1].stage} ({trips[-1].url.host}:{trips[-1].url.port})" if trips else " resolving"
            return ctx.fail(Outcome.TIMEOUT, "%sno answer within the module's timeout: timed out%s",
                            self._where(), doing)
        except ProbeError as err:
            return ctx.fail(err.outcome, "%s%s", self._where(), err)
        return True

    async def _step(self, request: HttpRequest) -> bool:
        name = request.name if isinstance(request, HttpStep) else ""
        self.step = name
        started = time.perf_counter()
        ok = False
        try:
            ok = await self._request(request)
        finally:
            if name:
                duration = time.perf_counter() - started
                self.run_state.steps.append((name, duration, ok))
                self.ctx.log("step %s %s in %.3fs", name, "passed" if ok else "failed", duration)
        return ok

    async def _request(self, request: HttpRequest) -> bool:
        ctx, settings, run = self.ctx, self.settings, self.run_state
        assert run.client is not None
        url = self.target
        if isinstance(request, HttpStep) and request.url:
            url = self.target.join(self.hc.URL(request.url))
        method, body, headers = request.method, _request_body(request), self._headers(request)
        seen: set[str] = set()
        followed = 0
        while True:
            exchange = await run.client.send(
                method, url, self._hop_headers(headers, url), body, settings.tls_config,
                self._server_name(headers, url), settings.proxy_url, max(0.001, ctx.remaining()),
            )
            ctx.log("%s %s -> %d %s", method, _safe_url(url), exchange.status, exchange.reason)
            location = exchange.location
            if location is None:
                break
            run.redirects += 1
            if not request.follow_redirects:
                ctx.log("not following the redirect to %s (follow_redirects: false)", location.split("?")[0])
                break
            seen.add(str(url))
            if followed == MAX_REDIRECTS:
                exchange.close()
                self._response(exchange)
                loop = " (a loop)" if str(self._next_url(url, location)) in seen else ""
                raise self.hc.HttpFailure(Outcome.PROTOCOL_ERROR, f"more than {MAX_REDIRECTS} redirects{loop}")
            exchange.close()
            url = self._next_url(url, location)
            followed += 1
            if exchange.status in (301, 302, 303) and method not in ("GET", "HEAD"):
                method, body = "GET", None  # what browsers and Go's client do
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        self._response(exchange)
        read = await exchange.read(settings.body_size_limit, settings.compression, request.keeps_body)
        run.body_length = read.length
        text = _decode(read.data, exchange.charset) if read.data is not None else ""
        if not self._check(request, exchange, read.too_large, text):
            return False
        self._extract(request, text)
        return True

    def _response(self, exchange: Exchange) -> None:
        run = self.run_state
        run.status, run.content_length = exchange.status, exchange.content_length
        run.ssl = exchange.trip.url.scheme == "https" and exchange.trip.ssl_object is not None
        run.version = float(exchange.version.removeprefix("HTTP/"))
        modified = exchange.headers.get("Last-Modified")
        run.last_modified = None
        if modified:
            try:
                run.last_modified = parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError, IndexError):
                self.ctx.log("unparsable Last-Modified %r", modified)

    def _check(self, request: HttpRequest, exchange: Exchange, too_large: bool, text: str) -> bool:
        ctx, run, where = self.ctx, self.run_state, self._where()
        status = exchange.status
        if request.valid_status_codes and status not in request.valid_status_codes:
            return ctx.fail(Outcome.MISMATCH, "%sstatus code %d is not in valid_status_codes %s", where, status,
                            list(request.valid_status_codes))
        if not request.valid_status_codes and not 200 <= status < 300:
            return ctx.fail(Outcome.MISMATCH, "%sstatus code %d, want 2xx", where, status)
        if too_large:
            return ctx.fail(Outcome.MISMATCH, "%sbody larger than body_size_limit (%d bytes)", where,
                            self.settings.body_size_limit)
        problem = _header_problem(request, exchange) or _body_problem(request, text)
        if problem:
            run.failed_due_to_regex = True
            return ctx.fail(Outcome.MISMATCH, "%s%s", where, problem)
        if request.valid_http_versions and exchange.version not in request.valid_http_versions:
            return ctx.fail(Outcome.MISMATCH, "%sHTTP version %s is not in valid_http_versions %s", where,
                            exchange.version, list(request.valid_http_versions))
        secure = exchange.trip.url.scheme == "https"
        if request.fail_if_ssl and secure:
            return ctx.fail(Outcome.MISMATCH, "%sthe final request was over TLS (fail_if_ssl)", where)
        if request.fail_if_not_ssl and not secure:
            return ctx.fail(Outcome.MISMATCH, "%sthe final request was not over TLS (fail_if_not_ssl)", where)
        return True

    def _extract(self, request: HttpRequest, text: str) -> None:
        document: Any = _NOT_PARSED
        for item in request.extract:
            value: float | None = None
            if item.count_regex is not None:
                value = float(sum(1 for _ in item.count_regex.finditer(text)))
            else:
                if document is _NOT_PARSED:
                    document = _parse_json(text)
                value, why = _pick(document, item.json_path or "")
                if value is None:
                    self.ctx.log("extract %s: %s", item.name, why, level="warning")
                    self.ctx.count_partial_error("extract")
                    continue
            self.run_state.extracted.append((item.name, value))

    def _headers(self, request: HttpRequest) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        for source in (self.settings.headers, request.headers):
            for name, value in source.items():
                for old in [k for k in headers if k.lower() == name.lower()]:
                    del headers[old]
                headers[name] = value
        if self.settings.compression in ("gzip", "deflate") and not _has(headers, "accept-encoding"):
            headers["Accept-Encoding"] = self.settings.compression
        if request.form is not None and not _has(headers, "content-type"):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return headers

    def _hop_headers(self, headers: dict[str, str], url: URL) -> dict[str, str]:
        """Host and credentials go only to the target's own host, never downgraded from https to http."""
        if self._same_host(url):
            hop = dict(headers)
            if not (self.target.scheme == "https" and url.scheme == "http"):
                auth = self._authorization()
                if auth:
                    hop["Authorization"] = auth
            return hop
        return {k: v for k, v in headers.items() if k.lower() != "host"}

    def _authorization(self) -> str | None:
        settings = self.settings
        if settings.bearer_token is not None:
            return f"Bearer {settings.bearer_token.reveal()}"
        if settings.basic_auth is not None:
            pair = f"{settings.basic_auth.username}:{settings.basic_auth.password.reveal()}"
            return "Basic " + base64.b64encode(pair.encode()).decode()
        return None

    def _server_name(self, headers: dict[str, str], url: URL) -> str | None:
        if not self._same_host(url):
            return None
        tls = self.settings.tls_config
        if tls is not None and tls.server_name:
            return tls.server_name
        return next((v.split(":")[0] for k, v in headers.items() if k.lower() == "host"), None)

    def _same_host(self, url: URL) -> bool:
        return (url.host or "").lower() == (self.target.host or "").lower()

    def _next_url(self, url: URL, location: str) -> URL:
        try:
            target: URL = url.join(self.hc.URL(location))
        except ValueError:
            raise self.hc.HttpFailure(Outcome.PROTOCOL_ERROR, f"bad redirect Location {location!r}") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise self.hc.HttpFailure(Outcome.PROTOCOL_ERROR, f"redirect to a non-http(s) URL {location!r}")
        return target

    def _where(self) -> str:
        return f"step {self.step}: " if self.step else ""


_NOT_PARSED = object()
_INVALID_JSON = object()


def _record(ctx: ProbeContext, run: _Run) -> None:
    phases = dict.fromkeys(PHASES, 0.0)
    phases["resolve"] = run.resolve
    trips = run.client.trips if run.client is not None else []
    for trip in trips:
        trip.add_phases(phases)
    add = ctx.sink.add
    for phase in PHASES:
        add("probe_http_duration_seconds", phases[phase], phase)
    add("probe_http_content_length", run.content_length)
    add("probe_http_uncompressed_body_length", run.body_length)
    add("probe_http_redirects", run.redirects)
    add("probe_http_ssl", 1 if run.ssl else 0)
    add("probe_http_status_code", run.status)
    add("probe_http_version", run.version)
    add("probe_failed_due_to_regex", 1 if run.failed_due_to_regex else 0)
    if run.last_modified is not None:
        add("probe_http_last_modified_timestamp_seconds", run.last_modified)
    for name, duration, ok in run.steps:
        add("egov_http_step_duration_seconds", duration, name)
        add("egov_http_step_success", 1 if ok else 0, name)
    for name, value in run.extracted:
        add("egov_http_extracted_value", value, name)
    last = trips[-1] if trips else None
    if last is not None and last.ssl_object is not None:
        if last.connected:
            _tls.record(ctx, last.ssl_object)
        else:
            # blackbox reports no certificate when the handshake fails; we keep the expiry of the one sent, so an
            # expired certificate still shows in probe_ssl_earliest_cert_expiry (and its alert).
            _tls.record_rejected(ctx, last.ssl_object)
    if trips:
        timings = " ".join(f"{phase}={phases[phase]:.6f}s" for phase in PHASES)
        ctx.log("%d round trip(s): %s", len(trips), timings)


def _check_url(value: str, what: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"; write it in full, e.g. https://{value}/" if "://" not in value else ""
        raise ValueError(f"{what} {value!r} is not an http(s) URL{hint}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not carry credentials; use basic_auth or bearer_token with a secret")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        raise ValueError(f"{what} {value!r}: {err}") from None


def _accepts(accept_encoding: str, compression: str) -> bool:
    """blackbox's rule: with a compression set, Accept-Encoding must accept it (q > 0, or through `*`)."""
    if compression in ("", "identity"):
        return True
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in (compression, "*"):
            quality = params.strip().removeprefix("q=")
            try:
                return not quality or float(quality) > 0
            except ValueError:
                return False
    return False


def _request_body(request: HttpRequest) -> bytes | None:
    if request.form is not None:
        return urlencode({k: v if isinstance(v, str) else v.reveal() for k, v in request.form.items()}).encode()
    if request.body is None:
        return None
    return (request.body if isinstance(request.body, str) else request.body.reveal()).encode()


def _has(headers: dict[str, str], name: str) -> bool:
    return any(k.lower() == name for k in headers)


def _safe_url(url: URL) -> str:
    return str(url.with_query(None).with_fragment(None)) + ("?…" if url.query_string else "")


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _header_problem(request: HttpRequest, exchange: Exchange) -> str:
    for spec, must_match in [(s, False) for s in request.fail_if_header_matches] + \
                            [(s, True) for s in request.fail_if_header_not_matches]:
        values = exchange.headers.getall(spec.header, [])
        if not values:
            if spec.allow_missing:
                continue
            return f"missing header {spec.header}"
        matched = any(spec.regexp.search(value) for value in values)
        if matched != must_match:
            verb = "does not match" if must_match else "matches"
            return f"header {spec.header} {verb} {spec.regexp.pattern!r}"
    return ""


def _body_problem(request: HttpRequest, text: str) -> str:
    for pattern in request.fail_if_body_matches_regexp:
        if pattern.search(text):
            return f"body matches {pattern.pattern!r}"
    for pattern in request.fail_if_body_not_matches_regexp:
        if not pattern.search(text):
            return f"body does not match {pattern.pattern!r}"
    return ""


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _INVALID_JSON


@lru_cache(maxsize=256)
def _parsed_path(path: str) -> tuple[str | int, ...]:
    return parse_json_path(path)


def _pick(document: Any, path: str) -> tuple[float | None, str]:
    if document is _INVALID_JSON:
        return None, "the body is not JSON"
    value = document
    for part in _parsed_path(path):
        found = (isinstance(part, int) and isinstance(value, list) and -len(value) <= part < len(value)) or (
            isinstance(part, str) and isinstance(value, dict) and part in value)
        if found:
            value = value[part]
        else:
            return None, f"{path}: no {part!r} in the JSON body"
    if isinstance(value, bool):
        return float(value), ""
    if isinstance(value, int | float):
        return float(value), ""
    if isinstance(value, str):
        try:
            return float(value), ""
        except ValueError:
            pass
    return None, f"{path} is {json.dumps(value)[:60]}, not a number"
