"""The web config file (`--web.config.file`, exporter-toolkit's format): model, loader, TLS context, basic auth.

Same keys and defaults as prometheus/exporter-toolkit (docs/web-configuration.md), with what Python's ssl cannot do
refused at load with a clear message instead of silently weakened:
- TLS 1.2 is the floor: min_version TLS10/TLS11 is refused.
- client certificates are only ever checked against the configured client CA (never the system store), so
  VerifyClientCertIfGiven and RequireAndVerifyClientCert need client_ca_file or client_ca, and the two modes that
  take a client certificate without checking it (RequestClientCert, RequireAnyClientCert) are refused.
- curve_preferences may name one curve (Python's ssl sets a single ECDH group).
- cipher_suites take Go's names (TLS 1.2 suites; TLS 1.3 suites are accepted and, as in Go, not configurable).
- http_server_config.http2 is accepted and has no effect: the agent speaks HTTP/1.1.
Paths are relative to the web config file's folder. Hashes and inline keys never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import ssl
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from agent.durations import parse_duration
from agent.errors import ConfigError, ConfigIssue
from agent.yamlsource import format_path, line_of, parse_nodes

PASSWORD_CACHE_SIZE = 100
MAX_PENDING_HASHES = 32
"""bcrypt checks waiting for the one hashing slot; more are answered 429 rather than queued without bound."""
BCRYPT_MAX_PASSWORD_BYTES = 72
WEAK_BCRYPT_COST = 10
_BCRYPT_RE = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
# A well-formed hash of no password anyone knows: unknown users are checked against it at the configured cost, so
# they take as long as known ones (exporter-toolkit's fake hash). Only its cost field is changed.
_DUMMY_HASH_TAIL = "$2b$10$OFr7UuyH79j.2CNnIH.hWertjNhP/cKwGsktHE0y5TJXqI3A0Gzte"[7:]

EXTRA_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
"""The headers exporter-toolkit lets a web config set, with their allowed values (empty: any value)."""

_VERSIONS = {"TLS10": 0x0301, "TLS11": 0x0302, "TLS12": 0x0303, "TLS13": 0x0304}
_SSL_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
_TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
_TLS12_SUITES = {
    # Go's tls.CipherSuites() (the ones without known weaknesses), by their Go names, to OpenSSL's names.
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
ClientAuth = Literal["NoClientCert", "RequestClientCert", "RequireAnyClientCert", "RequireClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _go_duration(value: object) -> float:
    """Go's `0`/`0s` (off) or a Prometheus-style duration, in seconds."""
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)


class TlsServerConfig(_Model):
    """exporter-toolkit's tls_server_config."""

    cert: str | None = None
    key: str | None = Field(default=None, repr=False)
    client_ca: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: str | None = None
    client_allowed_sans: list[str] | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @field_validator("min_version")
    @classmethod
    def _tls12_floor(cls, value: str) -> str:
        if _VERSIONS[value] < _VERSIONS["TLS12"]:
            raise ValueError(f"{value} is refused: the agent serves TLS 1.2 or newer only")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _known_ciphers(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in _TLS12_SUITES and name not in _TLS13_SUITES:
                raise ValueError(f"unknown cipher: {name} (Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _known_curves(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in _CURVES:
                raise ValueError(f"unknown curve: {name} (one of {', '.join(_CURVES)})")
        if len(value) > 1:
            raise ValueError("Python's ssl can honour only one curve: list one, or leave curve_preferences out for "
                             "OpenSSL's defaults (X25519, P-256, P-384, P-521)")
        return value

    @property
    def enabled(self) -> bool:
        """Whether any TLS setting is given (exporter-toolkit's IsEnabled): otherwise the agent serves plain HTTP."""
        return any((self.cert, self.key, self.client_ca, self.cert_file, self.key_file, self.client_ca_file,
                    self.client_auth_type != "NoClientCert"))


class HttpServerConfig(_Model):
    """exporter-toolkit's http_server_config: the http2 flag (accepted, no effect) and security headers."""

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name not in EXTRA_HEADERS:
                raise ValueError(f'HTTP header "{name}" can not be configured (allowed: {", ".join(EXTRA_HEADERS)})')
            allowed = EXTRA_HEADERS[name]
            if allowed and text not in allowed:
                raise ValueError(f"invalid value for {name}. Expected one of: {list(allowed)}, but got: {text!r}")
            if "\r" in text or "\n" in text:
                raise ValueError(f"invalid value for {name}: line breaks are not allowed")
        return value


class RateLimit(_Model):
    """exporter-toolkit's rate_limit: a token bucket refilled every `interval` (0: off), holding `burst` tokens."""

    interval: Annotated[float, BeforeValidator(_go_duration)] = 0.0
    burst: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class WebConfigModel(_Model):
    """The whole web config file."""

    tls_server_config: TlsServerConfig = Field(default_factory=TlsServerConfig)
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[Annotated[str, Field(min_length=1)], str] = Field(default_factory=dict, repr=False)
    rate_limit: RateLimit = Field(default_factory=RateLimit)

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _string_keys(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(user): (str(hashed) if isinstance(hashed, str | int | float) else hashed)
                    for user, hashed in value.items()}
        return value


@dataclass(frozen=True)
class WebConfig:
    """A loaded web config: the model, the server's SSL context and what to watch for changes."""

    path: str
    model: WebConfigModel
    ssl_context: ssl.SSLContext | None
    users: Mapping[str, bytes] = field(repr=False)
    dummy_hash: bytes = field(repr=False)
    allowed_sans: frozenset[str] | None
    warnings: tuple[str, ...]
    signature: tuple[tuple[str, int, int, int], ...]
    """(path, inode, size, mtime_ns) of the file and of every file it names: a change means a reload."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Security headers to put on every response."""
        return self.model.http_server_config.headers

    @property
    def tls_key(self) -> tuple[object, ...]:
        """What decides the listening socket's TLS: equal keys mean the running listener can stay."""
        return (self.model.tls_server_config, self.signature[1:])

    def client_allowed(self, peercert: Mapping[str, Any] | None) -> bool:
        """Whether a verified client certificate carries one of client_allowed_sans (always, if none are set)."""
        if self.allowed_sans is None:
            return True
        if not peercert:
            return False
        return any(_normal_san(kind, value) in self.allowed_sans for kind, value in peercert.get("subjectAltName", ()))


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check a web config file; raises ConfigError naming the file, the YAML path and the line."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(source, [ConfigIssue("", f"cannot read web config: {err.strerror or err}")]) from None
    data, root = _parse_yaml(raw, source)
    try:
        model = WebConfigModel.model_validate(data if data is not None else {})
    except ValidationError as err:
        issues = [_issue(error, root) for error in err.errors()]
        raise ConfigError(source, issues) from None
    base = Path(path).resolve().parent
    problems: list[ConfigIssue] = []
    users, warnings = _check_users(model.basic_auth_users, root, problems)
    context = None
    tls = model.tls_server_config
    files = [source]
    if tls.enabled:
        try:
            context, named = _server_context(tls, base)
            files += named
        except ValueError as err:
            problems.append(_at(root, ("tls_server_config",), str(err)))
    if problems:
        raise ConfigError(source, problems)
    sans = None
    if tls.client_allowed_sans is not None:
        sans = frozenset(_normal_san("", value) for value in tls.client_allowed_sans)
    if model.http_server_config.http2 and "http2" in model.http_server_config.model_fields_set:
        warnings.append("http_server_config.http2: true has no effect: the agent serves HTTP/1.1 only")
    costs = sorted(int(hashed[4:6]) for hashed in users.values())
    cost = max(set(costs), key=costs.count) if costs else 10
    return WebConfig(source, model, context, users, f"$2b${cost:02d}${_DUMMY_HASH_TAIL}".encode(), sans,
                     tuple(warnings), file_signature(files))


def file_signature(paths: list[str]) -> tuple[tuple[str, int, int, int], ...]:
    """(path, inode, size, mtime_ns) per path; a missing file gives zeros (so its return is a change too)."""
    out = []
    for path in paths:
        try:
            st = Path(path).stat()
        except OSError:
            out.append((path, 0, 0, 0))
        else:
            out.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class PasswordChecker:
    """bcrypt basic-auth checks, one at a time off the event loop, with bounded caches of their results.

    The cache key is (user, configured hash, sha256 of the password) as a tuple, so no request can forge another
    user's entry (CVE-2022-46146). Successes and failures have caches of their own, so a flood of wrong passwords
    cannot evict the scraper's entry; concurrent requests with the same key share one check. Unknown users are
    checked against a dummy hash of the configured cost, so they take as long as known ones.
    """

    def __init__(self, cache_size: int = PASSWORD_CACHE_SIZE) -> None:
        self._good: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        self._bad: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = asyncio.Lock()
        self._running: dict[tuple[str, bytes, bytes], asyncio.Future[bool]] = {}

    async def check(self, config: WebConfig, user: str, password: bytes) -> bool | None:
        """Whether `user` with `password` may in; False for unknown users and passwords bcrypt cannot take.

        None when MAX_PENDING_HASHES checks already wait for the hashing slot (the caller answers 429).
        """
        hashed = config.users.get(user)
        known = hashed is not None
        if hashed is None:
            hashed = config.dummy_hash
        if len(password) > BCRYPT_MAX_PASSWORD_BYTES:
            return False  # bcrypt reads 72 bytes at most: a longer one never matches (bcrypt>=5 raises for it)
        key = (user, hashed, hashlib.sha256(password).digest())
        for cache, result in ((self._good, True), (self._bad, False)):
            if key in cache:
                cache.move_to_end(key)
                return known and result
        running = self._running.get(key)
        if running is None:
            if len(self._running) >= MAX_PENDING_HASHES:
                return None
            running = asyncio.get_running_loop().create_future()
            self._running[key] = running
            try:
                async with self._lock:
                    ok = await asyncio.to_thread(_bcrypt_check, password, hashed)
            except BaseException:
                running.cancel()
                raise
            finally:
                del self._running[key]
            running.set_result(ok)
            cache = self._good if ok else self._bad
            cache[key] = None
            while len(cache) > self._cache_size:
                cache.popitem(last=False)
        ok = await asyncio.shield(running)
        return known and ok

    def __len__(self) -> int:
        return len(self._good) + len(self._bad)


class RateLimiter:
    """exporter-toolkit's token bucket: `burst` tokens, one more every `interval` seconds."""

    def __init__(self, interval: float, burst: int, now: float) -> None:
        self.interval = interval
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def allow(self, now: float) -> bool:
        """Take a token if there is one."""
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.interval)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _bcrypt_check(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        return False


def _check_users(users: dict[str, str], root: yaml.Node | None,
                 problems: list[ConfigIssue]) -> tuple[dict[str, bytes], list[str]]:
    out: dict[str, bytes] = {}
    warnings = []
    for user, hashed in users.items():
        match = _BCRYPT_RE.match(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            problems.append(_at(root, ("basic_auth_users", user),
                                "not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')"))
            continue
        if int(match.group(1)) < WEAK_BCRYPT_COST:
            warnings.append(f"basic_auth_users.{user}: bcrypt cost {int(match.group(1))} is below "
                            f"{WEAK_BCRYPT_COST}; hash it again with htpasswd -nBC {WEAK_BCRYPT_COST}")
        # Go and htpasswd write $2y$; the Python library reads the same algorithm as $2b$.
        out[user] = ("$2b$" + hashed.split("$", 2)[2]).encode()
    return out, warnings


def _server_context(tls: TlsServerConfig, base: Path) -> tuple[ssl.SSLContext, list[str]]:
    """The server's SSL context and the files it was built from; ValueError with a readable reason."""
    if not (tls.cert or tls.cert_file):
        raise ValueError("missing one of cert or cert_file")
    if not (tls.key or tls.key_file):
        raise ValueError("missing one of key or key_file")
    if tls.cert and tls.cert_file:
        raise ValueError("cert and cert_file exclude each other")
    if tls.key and tls.key_file:
        raise ValueError("key and key_file exclude each other")
    if tls.client_ca and tls.client_ca_file:
        raise ValueError("client_ca and client_ca_file exclude each other")
    if _VERSIONS[tls.max_version] < _VERSIONS["TLS12"]:
        raise ValueError(f"max_version {tls.max_version} is refused: the agent serves TLS 1.2 or newer only")
    if _VERSIONS[tls.min_version] > _VERSIONS[tls.max_version]:
        raise ValueError(f"min_version {tls.min_version} is newer than max_version {tls.max_version}")
    has_ca = bool(tls.client_ca or tls.client_ca_file)
    auth = "RequireAnyClientCert" if tls.client_auth_type == "RequireClientCert" else tls.client_auth_type
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        raise ValueError(f"client_auth_type {tls.client_auth_type} takes client certificates without checking "
                         "them; the agent refuses it: use RequireAndVerifyClientCert with client_ca_file")
    if has_ca and auth == "NoClientCert":
        raise ValueError("client CA's have been configured without a Client Auth Policy (client_auth_type)")
    if auth != "NoClientCert" and not has_ca:
        raise ValueError(f"client_auth_type {auth} needs client_ca_file or client_ca: client certificates are "
                         "checked against that CA only, never the system's")
    if tls.client_allowed_sans is not None and auth != "RequireAndVerifyClientCert":
        raise ValueError("client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
    files = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _SSL_VERSIONS[tls.min_version]
    context.maximum_version = _SSL_VERSIONS[tls.max_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    cert_path = _join(base, tls.cert_file) if tls.cert_file else None
    key_path = _join(base, tls.key_file) if tls.key_file else None
    with _inline_file(tls.cert, "cert") as inline_cert, _inline_file(tls.key, "key") as inline_key:
        for name, path in (("cert_file", cert_path), ("key_file", key_path)):
            if path is not None and not Path(path).exists():
                raise ValueError(f"failed to read {name} ({path}): no such file")
        try:
            context.load_cert_chain(cert_path or inline_cert or "", key_path or inline_key or "")
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"failed to load the certificate and key: {_ssl_reason(err)}") from None
    files += [p for p in (cert_path, key_path) if p]
    if has_ca:
        try:
            if tls.client_ca_file:
                ca_path = _join(base, tls.client_ca_file)
                if not Path(ca_path).exists():
                    raise ValueError(f"failed to read client_ca_file ({ca_path}): no such file")
                context.load_verify_locations(cafile=ca_path)
                files.append(ca_path)
            else:
                context.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"no usable CA certificate in the client CA: {_ssl_reason(err)}") from None
        if not context.get_ca_certs():
            raise ValueError("no CA certificate in the client CA")
        context.verify_mode = ssl.CERT_REQUIRED if auth == "RequireAndVerifyClientCert" else ssl.CERT_OPTIONAL
    tls12 = [_TLS12_SUITES[name] for name in tls.cipher_suites if name in _TLS12_SUITES]
    if tls.cipher_suites and tls.min_version == "TLS12":
        if not tls12:
            raise ValueError("cipher_suites lists no TLS 1.2 suite, so TLS 1.2 clients could not connect: add one "
                             "or set min_version: TLS13")
        try:
            context.set_ciphers(":".join(tls12))
        except ssl.SSLError as err:
            raise ValueError(f"OpenSSL refuses cipher_suites: {_ssl_reason(err)}") from None
    if tls.curve_preferences:
        context.set_ecdh_curve(_CURVES[tls.curve_preferences[0]])
    return context, files


@contextmanager
def _inline_file(text: str | None, name: str) -> Iterator[str | None]:
    """Inline PEM text as a path that never touches the disk (a memfd), for ssl's file-only loaders."""
    if text is None:
        yield None
        return
    fd = os.memfd_create(f"egov-web-{name}", os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _join(base: Path, path: str) -> str:
    return str(base / path)  # an absolute path replaces base


def _ssl_reason(err: BaseException) -> str:
    if isinstance(err, ssl.SSLError):
        return str(err.reason or err.strerror or err).replace("_", " ").lower()
    return str(getattr(err, "strerror", None) or err)


def _normal_san(kind: str, value: str) -> str:
    """IP addresses in one spelling (Python writes IPv6 SANs long and upper case, Go short and lower)."""
    if kind in ("", "IP Address"):
        with suppress(ValueError):
            return str(ipaddress.ip_address(value.strip()))
    return value


# ---------------------------------------------------------------------------------------------- YAML and errors


def _parse_yaml(raw: bytes, source: str) -> tuple[Any, yaml.Node | None]:
    try:
        data, root = parse_nodes(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(source, [ConfigIssue("", f"not UTF-8 text ({err.reason})")]) from None
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else None
        what = f"{err.context or ''} {err.problem or ''}".strip()
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {what}", line)]) from None
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {type(err).__name__}")]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "invalid YAML: the web config must be a mapping "
                                                   "(tls_server_config:, basic_auth_users:, ...)")])
    return data, root


def _issue(error: Any, root: yaml.Node | None) -> ConfigIssue:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing required key"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[0] == "basic_auth_users":
        message = message.split(" [", 1)[0]  # never echo a hash back
    return _at(root, loc, message)


def _at(root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> ConfigIssue:
    return ConfigIssue(format_path(loc), message, line_of(root, loc))


