"""The one exception tree of egov-agent, and the closed set of run outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """Why a run ended; a closed set, so it is safe as a label value."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    RESOLVE_FAILED = "resolve_failed"
    CONNECTION_FAILED = "connection_failed"
    TLS_FAILED = "tls_failed"
    AUTH_FAILED = "auth_failed"
    PROTOCOL_ERROR = "protocol_error"
    MISMATCH = "mismatch"
    ERROR = "error"


class AgentError(Exception):
    """Root of every error egov-agent raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ConfigError(AgentError):
    """A config file that cannot be used; carries every issue found, with its YAML path."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__(self.render())

    def render(self) -> str:
        """All issues, one per line, each prefixed by the file name."""
        return "\n".join(f"{self.source}: {issue}" for issue in self.issues)


class StartupError(AgentError):
    """The agent cannot start (listen address in use, unreadable file, ...)."""


class ProbeError(AgentError):
    """An expected probe failure raised from a helper; the runner turns it into an outcome."""

    outcome: Outcome = Outcome.ERROR


class ProbeTimeout(ProbeError, TimeoutError):
    """A probe step ran out of its share of the run's deadline."""

    outcome = Outcome.TIMEOUT


class ConnectionFailed(ProbeError):
    """The target could not be reached."""

    outcome = Outcome.CONNECTION_FAILED


class ProtocolError(ProbeError):
    """The target answered, but not in the protocol expected."""

    outcome = Outcome.PROTOCOL_ERROR
