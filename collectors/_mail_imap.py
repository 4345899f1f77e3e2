"""A small IMAP4rev1 client for probes: greeting, CAPABILITY, STARTTLS, LOGIN, SELECT, UID SEARCH/FETCH/STORE.

Why not stdlib imaplib in a thread: a thread blocked on a server that never answers cannot be cancelled, so it would
outlive the run's deadline (and shutdown) until its own socket timeout, and each run would hold a worker thread.
Over asyncio streams every command is bounded by the run's deadline and cancellation, reads are capped, and the few
commands a probe needs take about 200 lines. Measured on loopback against Dovecot 2.3: STARTTLS + LOGIN + SELECT in
about 8 ms either way, so the choice costs nothing in speed.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import Outcome
from collectors._mail_steps import StepFailed
from collectors._mail_stream import LineStream

MAX_UNTAGGED = 10_000
"""Untagged lines one command may get before it is abandoned (a server answering forever)."""

_LITERAL_RE = re.compile(rb"\{(\d{1,9})\+?\}$")
_CAPABILITY_RE = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_EXISTS_RE = re.compile(r"^(\d+) EXISTS$", re.IGNORECASE)
_UID_RE = re.compile(r"\bUID (\d+)", re.IGNORECASE)
_INTERNALDATE_RE = re.compile(r'INTERNALDATE "([^"]+)"', re.IGNORECASE)
_QUOTABLE_RE = re.compile(r"^[\x20-\x7e]*$")


@dataclass(slots=True)
class Response:
    """The end of one command: its status (OK, NO, BAD), the status text and the untagged lines before it."""

    status: str
    text: str
    untagged: list[str] = field(default_factory=list)


class ImapClient:
    """One IMAP session over a LineStream; methods raise StepFailed with an outcome when the server says no."""

    def __init__(self, stream: LineStream, log: Callable[..., None]) -> None:
        self.stream = stream
        self.capabilities: set[str] = set()
        self._log = log
        self._tag = 0

    async def greeting(self) -> str:
        """Read the server greeting (`* OK`, or `* PREAUTH`); keep the capabilities it lists."""
        line = (await self.stream.readline()).decode("utf-8", errors="replace")
        self._say("S: %s", line[:200])
        upper = line.upper()
        if upper.startswith("* BYE"):
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"the server refused the session: {line[:200]!r}")
        if not (upper.startswith("* OK") or upper.startswith("* PREAUTH")):
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"not an IMAP greeting: {line[:200]!r}")
        self._capabilities_from(line)
        return line

    async def capability(self) -> set[str]:
        """Ask for the capabilities (again, as after STARTTLS)."""
        response = await self.command("CAPABILITY")
        self._expect_ok(response, "CAPABILITY", Outcome.PROTOCOL_ERROR)
        for line in response.untagged:
            if line.upper().startswith("CAPABILITY "):
                self.capabilities = set(line.upper().split()[1:])
        return self.capabilities

    async def starttls(self, context: ssl.SSLContext, server_name: str, seconds: float) -> ssl.SSLObject | None:
        """STARTTLS and the handshake; StepFailed(TLS_FAILED) when the server does not offer it."""
        if "STARTTLS" not in self.capabilities:
            raise StepFailed(Outcome.TLS_FAILED, "the server does not offer STARTTLS")
        response = await self.command("STARTTLS")
        self._expect_ok(response, "STARTTLS", Outcome.TLS_FAILED)
        ssl_object = await self.stream.start_tls(context, server_name, seconds)
        self.capabilities = set()  # RFC 3501 6.2.1: forget what was said in clear text
        return ssl_object

    async def login(self, username: str, password: str) -> None:
        """LOGIN (or AUTHENTICATE PLAIN for characters a quoted string cannot carry); only over TLS."""
        if self.stream.ssl_object() is None:
            raise StepFailed(Outcome.TLS_FAILED, "refusing to send credentials over a connection without TLS")
        if not self.capabilities:
            await self.capability()
        if "LOGINDISABLED" in self.capabilities:
            raise StepFailed(Outcome.AUTH_FAILED, "the server disables LOGIN (LOGINDISABLED)")
        if _QUOTABLE_RE.match(username) and _QUOTABLE_RE.match(password):
            response = await self.command("LOGIN", _quote(username), _quote(password), secret=True)
        elif "AUTH=PLAIN" in self.capabilities:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            response = await self._authenticate_plain(token)
        else:
            raise StepFailed(Outcome.AUTH_FAILED, "the credentials have characters LOGIN cannot send, and the "
                             "server does not offer AUTH=PLAIN")
        self._expect_ok(response, "login", Outcome.AUTH_FAILED)
        self._capabilities_from(response.text)

    async def select(self, mailbox: str) -> int:
        """SELECT a mailbox; the number of messages in it."""
        response = await self.command("SELECT", _quote(mailbox))
        self._expect_ok(response, f"SELECT {mailbox}", Outcome.MISMATCH)
        for line in response.untagged:
            match = _EXISTS_RE.match(line)
            if match:
                return int(match[1])
        return 0

    async def uid_search(self, *criteria: str) -> list[int]:
        """UIDs of the messages matching the criteria (already quoted as IMAP needs)."""
        response = await self.command("UID SEARCH", *criteria)
        self._expect_ok(response, "UID SEARCH", Outcome.PROTOCOL_ERROR)
        uids: list[int] = []
        for line in response.untagged:
            if line.upper().startswith("SEARCH"):
                uids += [int(word) for word in line.split()[1:] if word.isdigit()]
        return uids

    async def uid_internal_dates(self, uids: list[int]) -> dict[int, str]:
        """INTERNALDATE (the server's arrival time, `27-Nov-2026 16:01:53 +0000`) of each UID."""
        if not uids:
            return {}
        response = await self.command("UID FETCH", _uid_set(uids), "(UID INTERNALDATE)")
        self._expect_ok(response, "UID FETCH", Outcome.PROTOCOL_ERROR)
        dates: dict[int, str] = {}
        for line in response.untagged:
            uid, date = _UID_RE.search(line), _INTERNALDATE_RE.search(line)
            if uid and date:
                dates[int(uid[1])] = date[1]
        return dates

    async def uid_delete(self, uids: list[int]) -> None:
        """Flag the UIDs \\Deleted and expunge them (only them with UIDPLUS; else a plain EXPUNGE)."""
        if not uids:
            return
        uid_set = _uid_set(uids)
        response = await self.command("UID STORE", uid_set, "+FLAGS.SILENT", r"(\Deleted)")
        self._expect_ok(response, "UID STORE", Outcome.PROTOCOL_ERROR)
        if not self.capabilities:
            await self.capability()
        if "UIDPLUS" in self.capabilities:
            response = await self.command("UID EXPUNGE", uid_set)
        else:
            response = await self.command("EXPUNGE")
        self._expect_ok(response, "EXPUNGE", Outcome.PROTOCOL_ERROR)

    async def noop(self) -> None:
        """NOOP: lets the server report new messages."""
        self._expect_ok(await self.command("NOOP"), "NOOP", Outcome.PROTOCOL_ERROR)

    async def logout(self) -> None:
        """LOGOUT; the answer is not waited for beyond the tagged line."""
        await self.command("LOGOUT")

    async def command(self, name: str, *args: str, secret: bool = False) -> Response:
        """Send a tagged command and read until its tagged answer; untagged lines are collected."""
        self._tag += 1
        tag = f"E{self._tag:03d}"
        line = " ".join((tag, name, *args))
        self._say("C: %s", f"{tag} {name} <credentials>" if secret else line[:200])
        await self.stream.send(line.encode() + b"\r\n")
        return await self._response(tag)

    async def _authenticate_plain(self, token: str) -> Response:
        self._tag += 1
        tag = f"E{self._tag:03d}"
        self._say("C: %s AUTHENTICATE PLAIN <credentials>", tag)
        if "SASL-IR" in self.capabilities:
            await self.stream.send(f"{tag} AUTHENTICATE PLAIN {token}\r\n".encode())
            return await self._response(tag)
        await self.stream.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
        line = await self.stream.readline()
        if not line.startswith(b"+"):
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"expected a continuation, got {line[:200]!r}")
        await self.stream.send(token.encode() + b"\r\n")
        return await self._response(tag)

    async def _response(self, tag: str) -> Response:
        untagged: list[str] = []
        while len(untagged) < MAX_UNTAGGED:
            line = await self._full_line()
            if line.startswith(tag + " "):
                status, _, text = line[len(tag) + 1:].partition(" ")
                self._say("S: %s", line[:200])
                return Response(status.upper(), text, untagged)
            if line.startswith("* "):
                untagged.append(line[2:])
                if len(untagged) <= 20:
                    self._say("S: %s", line[:200])
                continue
            if line.startswith("+"):
                raise StepFailed(Outcome.PROTOCOL_ERROR, f"unexpected continuation {line[:200]!r}")
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"not an IMAP response line: {line[:200]!r}")
        raise StepFailed(Outcome.PROTOCOL_ERROR, f"more than {MAX_UNTAGGED} untagged lines for one command")

    async def _full_line(self) -> str:
        """A response line with its literals inlined (as `{n}` markers: probes never need their content)."""
        parts: list[bytes] = []
        line = await self.stream.readline()
        while (match := _LITERAL_RE.search(line)) is not None:
            literal = await self.stream.read_exactly(int(match[1]))
            parts += [line, b"\r\n", literal.replace(b"\r", b" ").replace(b"\n", b" ")]
            line = await self.stream.readline()
        parts.append(line)
        return b"".join(parts).decode("utf-8", errors="replace")

    def _capabilities_from(self, text: str) -> None:
        match = _CAPABILITY_RE.search(text)
        if match:
            self.capabilities = set(match[1].upper().split())

    def _expect_ok(self, response: Response, what: str, outcome: Outcome) -> None:
        if response.status != "OK":
            raise StepFailed(outcome, f"{what} answered {response.status} {response.text[:200]}")

    def _say(self, message: str, *args: object) -> None:
        self._log(message, *args)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_set(uids: list[int]) -> str:
    return ",".join(str(uid) for uid in sorted(set(uids)))
