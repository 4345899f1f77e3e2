"""A small POP3 client for probes: greeting, CAPA, STLS, USER/PASS, STAT, QUIT (same reasons as _mail_imap)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable

from agent.errors import Outcome
from collectors._mail_steps import StepFailed
from collectors._mail_stream import LineStream

MAX_CAPA_LINES = 1000
_STAT_RE = re.compile(rb"^\+OK (\d+) (\d+)")
_SENDABLE_RE = re.compile(r"^[\x20-\x7e\x80-\U0010ffff]*$")


class Pop3Client:
    """One POP3 session over a LineStream; methods raise StepFailed with an outcome when the server says -ERR."""

    def __init__(self, stream: LineStream, log: Callable[..., None]) -> None:
        self.stream = stream
        self.capabilities: set[str] = set()
        self._log = log

    async def greeting(self) -> str:
        """Read the `+OK` greeting."""
        line = (await self.stream.readline()).decode("utf-8", errors="replace")
        self._log("S: %s", line[:200])
        if not line.startswith("+OK"):
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"not a POP3 greeting: {line[:200]!r}")
        return line

    async def capa(self) -> set[str]:
        """CAPA (RFC 2449); an empty set from a server that does not know it."""
        first = await self._command("CAPA")
        self.capabilities = set()
        if not first.startswith(b"+OK"):
            return self.capabilities
        for _ in range(MAX_CAPA_LINES):
            line = await self.stream.readline()
            if line == b".":
                return self.capabilities
            self.capabilities.add(line.decode("utf-8", errors="replace").split(" ")[0].upper())
        raise StepFailed(Outcome.PROTOCOL_ERROR, f"CAPA answered more than {MAX_CAPA_LINES} lines")

    async def stls(self, context: ssl.SSLContext, server_name: str, seconds: float) -> ssl.SSLObject | None:
        """STLS and the handshake; StepFailed(TLS_FAILED) when the server does not offer it."""
        if "STLS" not in self.capabilities:
            raise StepFailed(Outcome.TLS_FAILED, "the server does not offer STLS (STARTTLS)")
        answer = await self._command("STLS")
        if not answer.startswith(b"+OK"):
            raise StepFailed(Outcome.TLS_FAILED, f"STLS answered {answer[:200]!r}")
        ssl_object = await self.stream.start_tls(context, server_name, seconds)
        self.capabilities = set()
        return ssl_object

    async def login(self, username: str, password: str) -> None:
        """USER and PASS; only over TLS."""
        if self.stream.ssl_object() is None:
            raise StepFailed(Outcome.TLS_FAILED, "refusing to send credentials over a connection without TLS")
        if not (_SENDABLE_RE.match(username) and _SENDABLE_RE.match(password)):
            raise StepFailed(Outcome.AUTH_FAILED, "the credentials have control characters USER/PASS cannot send")
        answer = await self._command(f"USER {username}", shown="USER <username>")
        if answer.startswith(b"+OK"):
            answer = await self._command(f"PASS {password}", shown="PASS <password>")
        if not answer.startswith(b"+OK"):
            raise StepFailed(Outcome.AUTH_FAILED, f"login refused: {answer[:200].decode(errors='replace')}")

    async def stat(self) -> tuple[int, int]:
        """STAT: (messages, bytes) in the maildrop."""
        answer = await self._command("STAT")
        match = _STAT_RE.match(answer)
        if match is None:
            raise StepFailed(Outcome.PROTOCOL_ERROR, f"STAT answered {answer[:200]!r}")
        return int(match[1]), int(match[2])

    async def quit(self) -> None:
        """QUIT (ends the session; a server commits deletions here)."""
        await self._command("QUIT")

    async def _command(self, line: str, shown: str | None = None) -> bytes:
        self._log("C: %s", shown or line)
        await self.stream.send(line.encode() + b"\r\n")
        answer = await self.stream.readline()
        self._log("S: %s", answer[:200].decode("utf-8", errors="replace"))
        return answer
