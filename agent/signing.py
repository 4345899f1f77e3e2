"""`egov-agent sign`: Ed25519 signatures over configs published to the fleet (issue 11).

A signed config is the config file with one comment line put in front of it (so it stays a valid YAML config):

    # egov-agent-signature: v1 {"not_after":...,"not_before":...,"org_id":...,"sha256":...,"version":N} SIGNATURE

The JSON names the office, a version number, a validity window (RFC 3339) and the SHA-256 of every byte after
that first line. SIGNATURE is the base64 Ed25519 signature of MESSAGE_PREFIX plus the JSON text exactly as it
stands in the line (we write it with sorted keys, no spaces, ASCII, UTC times).
deploy/central/config-publishing.md documents the format for other tools.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from agent.durations import parse_duration
from agent.errors import AgentError, ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HELP = "sign an office's config for agents that fetch it from the province"
SIGNATURE_PREFIX = b"# egov-agent-signature: v1 "
MESSAGE_PREFIX = b"egov-agent config signature v1\n"
DEFAULT_VALID_FOR = "30d"
CLOCK_SKEW_SECONDS = 3600
"""A config is valid from one hour before it was signed, so an office clock slightly behind still accepts it."""
MAX_SIGNATURE_LINE = 4096
VERSIONS_RULES = "prometheus/config_versions.rules.yml"
"""Written by --dir beside DIR/signed: egov_config_published_version{org_id} for the EgovAgentConfigOutdated alert."""
_FIELDS = {"not_after", "not_before", "org_id", "sha256", "version"}
_ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SignatureError(AgentError):
    """A signed config that must be refused; `reason` is a closed label value (malformed, bad_signature, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The signed facts about one published config."""

    org_id: str
    version: int
    not_before: int
    not_after: int
    sha256: str

    def canonical(self) -> bytes:
        """The JSON the signature covers: sorted keys, no spaces, ASCII only."""
        fields = {"not_after": _rfc3339(self.not_after), "not_before": _rfc3339(self.not_before),
                  "org_id": self.org_id, "sha256": self.sha256, "version": self.version}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_config(body: bytes, key: Ed25519PrivateKey, org_id: str, version: int, not_before: int,
                not_after: int) -> bytes:
    """The signed file for `body` (a config; an existing signature line is replaced)."""
    body = strip_signature(body)
    if not _ORG_ID.match(org_id):
        raise ValueError(f"invalid office id {org_id!r}")
    if version < 1:
        raise ValueError("the version must be a positive integer")
    if not_after <= not_before:
        raise ValueError("the validity window is empty (not_after is not after not_before)")
    envelope = Envelope(org_id, version, not_before, not_after, hashlib.sha256(body).hexdigest())
    signature = base64.b64encode(key.sign(MESSAGE_PREFIX + envelope.canonical()))
    return SIGNATURE_PREFIX + envelope.canonical() + b" " + signature + b"\n" + body


def strip_signature(raw: bytes) -> bytes:
    """The config without its signature line (unchanged if it has none)."""
    if raw.startswith(SIGNATURE_PREFIX):
        newline = raw.find(b"\n")
        return b"" if newline < 0 else raw[newline + 1:]
    return raw


def verify_config(raw: bytes, keys: list[Ed25519PublicKey], org_id: str, now: float | None = None) -> Envelope:
    """The envelope of a signed file whose signature, digest and office match; raises SignatureError.

    With `now` set, the validity window is checked too (not_yet_valid, expired).
    """
    from cryptography.exceptions import InvalidSignature

    envelope, signed, signature = _read_envelope(raw)
    message = MESSAGE_PREFIX + signed
    for key in keys:
        try:
            key.verify(signature, message)
            break
        except InvalidSignature:
            continue
    else:
        raise SignatureError("bad_signature", "the signature does not verify with any configured public key")
    body = strip_signature(raw)
    if hashlib.sha256(body).hexdigest() != envelope.sha256:
        raise SignatureError("bad_signature", "the config's bytes do not match the signed sha256 (changed or cut)")
    if envelope.org_id != org_id:
        raise SignatureError("wrong_office", f"signed for office {envelope.org_id}, this agent is {org_id}")
    if now is not None and now < envelope.not_before:
        raise SignatureError("not_yet_valid", f"valid from {_rfc3339(envelope.not_before)}, the clock says "
                             f"{_rfc3339(int(now))}")
    if now is not None and now >= envelope.not_after:
        raise SignatureError("expired", f"expired at {_rfc3339(envelope.not_after)}, the clock says "
                             f"{_rfc3339(int(now))}")
    return envelope


def load_public_keys(path: str | os.PathLike[str]) -> list[Ed25519PublicKey]:
    """Ed25519 public keys from a file: PEM blocks and/or lines of raw base64 (32 bytes); raises ValueError."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read public key file {path}: {getattr(err, 'strerror', None) or err}") from None
    keys: list[Ed25519PublicKey] = []
    for block in re.findall(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", text, re.S):
        try:
            key = load_pem_public_key(block.encode("ascii"))
        except ValueError:
            raise ValueError(f"{path}: a PEM block is not a public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: a PEM key is not an Ed25519 key")
        keys.append(key)
    rest = re.sub(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", "", text, flags=re.S)
    for line in rest.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(line, validate=True)))
        except (binascii.Error, ValueError):
            raise ValueError(f"{path}: {line[:20]!r}... is neither PEM nor a base64 Ed25519 key (32 bytes)") from None
    if not keys:
        raise ValueError(f"{path}: no Ed25519 public key in the file")
    return keys


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 private key of a PEM file (unencrypted, as --generate-key writes it); raises ValueError."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as err:
        raise ValueError(f"cannot read key file {path}: {err.strerror or err}") from None
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def generate_key(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new private key to PATH (mode 0600, refuses to overwrite) and its public key to PATH.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(path), Path(f"{path}.pub")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path.write_bytes(public)
    return private_path, public_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's flags."""
    parser.add_argument("--generate-key", metavar="PATH",
                        help="write a new Ed25519 private key to PATH (0600) and its public key to PATH.pub, then exit")
    parser.add_argument("--key", metavar="PRIVATE_KEY", help="the province's Ed25519 private key (PEM)")
    parser.add_argument("--office", metavar="ORG_ID", help="office the FILEs are for (default: their office.org_id)")
    parser.add_argument("--dir", metavar="DIR",
                        help="sign every DIR/agents/<org_id>.yaml that `inventory generate` wrote (into DIR/signed)")
    parser.add_argument("--out", metavar="DIR",
                        help="where signed files go (default DIR/signed with --dir, else signed/ beside each FILE)")
    parser.add_argument("--valid-for", default=DEFAULT_VALID_FOR, metavar="DURATION",
                        help=f"how long agents accept the signed config (default {DEFAULT_VALID_FOR})")
    parser.add_argument("--not-before", metavar="TIME",
                        help="RFC 3339 start of validity (default: one hour before now, for clock skew)")
    parser.add_argument("--version", dest="config_version", type=int, metavar="N",
                        help="version number, higher than any published before (default: the current Unix time)")
    parser.add_argument("file", nargs="*", help="config files to sign")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the process exit code."""
    if args.generate_key:
        try:
            private_path, public_path = generate_key(args.generate_key)
        except OSError as err:
            print(f"egov-agent sign: cannot write {args.generate_key}: {err.strerror or err}", file=sys.stderr)
            return 1
        print(f"private key: {private_path} (keep it on the signing machine)\npublic key: {public_path} "
              "(install it on every agent as config_source.public_key)")
        return 0
    if not args.key or bool(args.dir) == bool(args.file):
        print("egov-agent sign: give --key and either --dir DIR or FILE... (or --generate-key PATH)", file=sys.stderr)
        return 2
    try:
        plan = _plan(args)
        key = load_private_key(args.key)
    except ValueError as err:
        print(f"egov-agent sign: {err}", file=sys.stderr)
        return 2
    problems: list[str] = []
    outputs: list[tuple[Path, bytes]] = []
    offices: list[str] = []
    for source, target, office in plan.items:
        try:
            org_id, data = _sign_one(source, office, key, plan)
            outputs.append((target, data))
            offices.append(org_id)
        except (ValueError, OSError) as err:
            problems.append(f"{source}: {err}")
    for problem in problems:
        print(f"egov-agent sign: {problem}", file=sys.stderr)
    if problems:
        print("egov-agent sign: nothing written", file=sys.stderr)
        return 1
    for target, data in outputs:
        _write_atomic(target, data)
    removed = _remove_stale(plan) if args.dir else 0
    if args.dir:
        _write_atomic(Path(args.dir) / VERSIONS_RULES, _versions_rules(plan.version, offices))
    print(f"signed {len(outputs)} configs, version {plan.version}, valid {_rfc3339(plan.not_before)} to "
          f"{_rfc3339(plan.not_after)}" + (f", {removed} stale signed files removed" if removed else ""))
    return 0


@dataclass
class _Plan:
    items: list[tuple[Path, Path, str | None]]
    out: Path | None
    version: int
    not_before: int
    not_after: int


def _plan(args: argparse.Namespace) -> _Plan:
    now = int(time.time())
    not_before = _parse_time(args.not_before) if args.not_before else now - CLOCK_SKEW_SECONDS
    not_after = (now if not args.not_before else not_before) + int(parse_duration(args.valid_for))
    version = args.config_version if args.config_version is not None else now
    if version < 1:
        raise ValueError("--version must be a positive integer")
    items: list[tuple[Path, Path, str | None]] = []
    out: Path | None = None
    if args.dir:
        out = Path(args.out) if args.out else Path(args.dir) / "signed"
        sources = sorted((Path(args.dir) / "agents").glob("*.yaml"))
        if not sources:
            raise ValueError(f"no agents/*.yaml in {args.dir} (run `egov-agent inventory generate` first)")
        items = [(source, out / source.name, args.office) for source in sources]
    else:
        for name in args.file:
            source = Path(name)
            folder = Path(args.out) if args.out else source.parent / "signed"
            items.append((source, folder / source.name, args.office))
    return _Plan(items, out, version, not_before, not_after)


def _sign_one(source: Path, office: str | None, key: Ed25519PrivateKey, plan: _Plan) -> tuple[str, bytes]:
    body = strip_signature(source.read_bytes())
    named = _office_of(body)
    if office is not None and named is not None and office != named:
        raise ValueError(f"office.org_id is {named}, not --office {office}")
    org_id = office or named
    if org_id is None:
        raise ValueError("no office.org_id in the file; give --office")
    problems = _validate(body, str(source))
    if problems:
        raise ValueError("invalid config:\n  " + "\n  ".join(problems))
    return org_id, sign_config(body, key, org_id, plan.version, plan.not_before, plan.not_after)


def _office_of(body: bytes) -> str | None:
    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError:
        return None  # _validate names the YAML error
    office = data.get("office") if isinstance(data, dict) else None
    org_id = office.get("org_id") if isinstance(office, dict) else None
    return str(org_id) if org_id is not None else None


def _validate(body: bytes, where: str) -> list[str]:
    """What agent.config refuses; secrets missing here are fine (the files live on the office PC)."""
    from agent.config import parse_config

    try:
        parse_config(body, where)
    except ConfigError as err:
        return [str(issue) for issue in err.issues if not _secret_only(issue.message)]
    return []


def _secret_only(message: str) -> bool:
    return message.startswith(("cannot read secret file", "secret file ")) or (
        message.startswith("environment variable ") and message.endswith("is not set or empty"))


def _versions_rules(version: int, offices: list[str]) -> bytes:
    """One recording rule per office: the version just published for it (deploy/prometheus/rules alerts use it)."""
    rules = [{"record": "egov_config_published_version", "expr": f"vector({version})", "labels": {"org_id": org_id}}
             for org_id in sorted(offices)]
    header = "# Generated by `egov-agent sign --dir`: the config version published for each office.\n"
    document = {"groups": [{"name": "egov-config-published", "rules": rules}]}
    return (header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)).encode("utf-8")


def _remove_stale(plan: _Plan) -> int:
    if plan.out is None:
        return 0
    wanted = {target for _, target, _ in plan.items}
    removed = 0
    for path in plan.out.glob("*.yaml"):
        if path not in wanted:
            path.unlink()
            removed += 1
    return removed


def _write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so a file server never serves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.chmod(0o644)
    temporary.replace(path)


def _read_envelope(raw: bytes) -> tuple[Envelope, bytes, bytes]:
    if not raw.startswith(SIGNATURE_PREFIX):
        raise SignatureError("malformed", "no signature line: the file does not start with "
                             f"{SIGNATURE_PREFIX.decode().strip()!r}")
    newline = raw.find(b"\n", 0, MAX_SIGNATURE_LINE)
    if newline < 0:
        raise SignatureError("malformed", "the signature line is not terminated")
    line = raw[len(SIGNATURE_PREFIX):newline].rstrip(b"\r")
    fields_text, _, signature_text = line.rpartition(b" ")
    try:
        fields: Any = json.loads(fields_text.decode("ascii"))
        signature = base64.b64decode(signature_text, validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise SignatureError("malformed", "the signature line is not JSON followed by a base64 signature") from None
    if not isinstance(fields, dict) or set(fields) != _FIELDS:
        raise SignatureError("malformed", f"the signed fields must be exactly {', '.join(sorted(_FIELDS))}")
    try:
        envelope = Envelope(
            org_id=_checked(fields["org_id"], str, "org_id"),
            version=_checked(fields["version"], int, "version"),
            not_before=_parse_time(_checked(fields["not_before"], str, "not_before")),
            not_after=_parse_time(_checked(fields["not_after"], str, "not_after")),
            sha256=_checked(fields["sha256"], str, "sha256"),
        )
    except ValueError as err:
        raise SignatureError("malformed", f"signed field {err}") from None
    if not re.fullmatch(r"[0-9a-f]{64}", envelope.sha256) or envelope.version < 1 or len(signature) != 64:
        raise SignatureError("malformed", "bad sha256, version or signature length in the signature line")
    return envelope, fields_text, signature


def _checked(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} must be a {kind.__name__}")
    return value


def _parse_time(text: str) -> int:
    """RFC 3339 with a zone (Z or +07:00) to Unix seconds; raises ValueError."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use RFC 3339, e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone: add Z or +07:00")
    return int(moment.timestamp())


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
