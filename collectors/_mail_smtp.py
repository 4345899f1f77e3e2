"""SMTP steps over aiosmtplib: greeting, EHLO, STARTTLS, AUTH PLAIN/LOGIN, sending one message; errors as outcomes."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.message import EmailMessage
from typing import TYPE_CHECKING

from agent.errors import Outcome
from collectors._mail_steps import StepFailed, reason

if TYPE_CHECKING:
    import aiosmtplib


MAX_READ = 1024 * 1024
"""Bytes one SMTP connection may read: aiosmtplib buffers a multi-line reply without limit and parses the whole
buffer again on many reads, so a server streaming `250-` lines would otherwise eat memory and CPU to the deadline."""


class ReplyTooLong(Exception):
    """The server sent more than MAX_READ bytes on one connection."""


def session(sock: socket.socket, server_name: str, implicit_tls: bool, context: ssl.SSLContext,
            ehlo: str) -> aiosmtplib.SMTP:
    """An aiosmtplib client on a connected socket (nothing is sent yet); never looks up the local FQDN."""
    import aiosmtplib

    _cap_reads()
    return aiosmtplib.SMTP(hostname=server_name, local_hostname=ehlo, use_tls=implicit_tls, start_tls=False,
                           tls_context=context, sock=sock)


async def greeting(smtp: aiosmtplib.SMTP, seconds: float) -> str:
    """Connect the session (TLS handshake first with implicit TLS) and read the 220 greeting."""
    with errors():
        response = await smtp.connect(timeout=seconds)
    return f"{response.code} {response.message}"


async def ehlo(smtp: aiosmtplib.SMTP, seconds: float) -> None:
    """EHLO; the server's extensions are then known to `smtp`."""
    with errors():
        await smtp.ehlo(timeout=seconds)


async def starttls(smtp: aiosmtplib.SMTP, server_name: str, context: ssl.SSLContext,
                   seconds: float) -> ssl.SSLObject | None:
    """STARTTLS, the handshake and EHLO again; StepFailed(TLS_FAILED) when the server does not offer it."""
    if not smtp.supports_extension("starttls"):
        raise StepFailed(Outcome.TLS_FAILED, "the server does not offer STARTTLS")
    with errors(Outcome.TLS_FAILED, answered=Outcome.TLS_FAILED):
        await smtp.starttls(server_hostname=server_name, tls_context=context, timeout=seconds)
    ssl_object: ssl.SSLObject | None = smtp.get_transport_info("ssl_object")
    with errors():
        await smtp.ehlo(timeout=seconds)
    return ssl_object


async def authenticate(smtp: aiosmtplib.SMTP, username: str, password: str, mechanism: str,
                       seconds: float) -> None:
    """One AUTH attempt with `mechanism` (PLAIN or LOGIN); only over TLS, never a second mechanism."""
    if smtp.get_transport_info("ssl_object") is None:
        raise StepFailed(Outcome.TLS_FAILED, "refusing to send credentials over a connection without TLS")
    if not smtp.supports_extension("auth"):
        raise StepFailed(Outcome.AUTH_FAILED, "the server offers no AUTH")
    offered = smtp.supported_auth_methods
    if mechanism.lower() not in offered:
        raise StepFailed(Outcome.AUTH_FAILED, f"the server does not offer AUTH {mechanism} (offers: "
                         f"{' '.join(offered).upper() or 'none'})")
    with errors():
        if mechanism.upper() == "LOGIN":
            await smtp.auth_login(username, password, timeout=seconds)
        else:
            await smtp.auth_plain(username, password, timeout=seconds)


async def send(smtp: aiosmtplib.SMTP, message: EmailMessage, sender: str, recipient: str, seconds: float) -> None:
    """MAIL FROM, RCPT TO, DATA for one message; StepFailed(MISMATCH) when the server refuses it."""
    with errors(refused=Outcome.MISMATCH):
        await smtp.send_message(message, sender=sender, recipients=[recipient], timeout=seconds)


async def quit_quietly(smtp: aiosmtplib.SMTP, seconds: float) -> None:
    """QUIT when still connected; a failure here changes nothing in the result."""
    import aiosmtplib

    if smtp.is_connected and seconds > 0:
        with suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await smtp.quit(timeout=seconds)


def abort(smtp: aiosmtplib.SMTP) -> None:
    """Drop the connection at once (no TLS close_notify exchange that a broken peer could stall).

    The socket given to `session` belongs to the event loop from `greeting` on: its transport closes it. Closing it
    here as well would free the descriptor number while the loop still watches it.
    """
    if isinstance(smtp.transport, asyncio.WriteTransport):
        smtp.transport.abort()
    smtp.close()


@contextmanager
def errors(connect_outcome: Outcome = Outcome.CONNECTION_FAILED, refused: Outcome = Outcome.PROTOCOL_ERROR,
           answered: Outcome = Outcome.PROTOCOL_ERROR) -> Iterator[None]:
    """aiosmtplib's exceptions as StepFailed with an outcome and a message that carries no secret."""
    import aiosmtplib

    try:
        yield
    except aiosmtplib.SMTPAuthenticationError as err:
        raise StepFailed(Outcome.AUTH_FAILED, f"authentication refused: {err.code} {err.message}") from None
    except aiosmtplib.SMTPTimeoutError:
        raise TimeoutError from None
    except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused,
            aiosmtplib.SMTPDataError) as err:
        raise StepFailed(refused, f"the server refused the message: {_text(err)}") from None
    except aiosmtplib.SMTPConnectResponseError as err:
        raise StepFailed(Outcome.PROTOCOL_ERROR, f"greeting {err.code} {err.message[:200]}") from None
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected) as err:
        cause = err.__cause__
        if isinstance(cause, ReplyTooLong):
            raise StepFailed(Outcome.PROTOCOL_ERROR, str(cause)) from None
        if isinstance(cause, ssl.SSLError):
            raise StepFailed(Outcome.TLS_FAILED, f"TLS failed: {reason(cause)}") from None
        raise StepFailed(connect_outcome, f"connection lost: {reason(cause or err)}") from None
    except aiosmtplib.SMTPResponseException as err:
        text = err.message[:200] if err.code < 0 else f"answered {err.code} {err.message[:200]}"
        raise StepFailed(answered, text) from None
    except aiosmtplib.SMTPException as err:
        raise StepFailed(Outcome.PROTOCOL_ERROR, str(err)[:200]) from None


def _text(err: Exception) -> str:
    recipients = getattr(err, "recipients", None)
    if recipients:
        return "; ".join(_text(item) for item in recipients)
    code, message = getattr(err, "code", ""), getattr(err, "message", str(err))
    return f"{code} {message}"[:200]


def _cap_reads() -> None:
    """Make aiosmtplib build its connections with _CappedProtocol (it names its protocol class as a module global)."""
    import aiosmtplib.smtp

    global _CappedProtocol
    if _CappedProtocol is None:
        _CappedProtocol = _capped_protocol_class()
    vars(aiosmtplib.smtp)["SMTPProtocol"] = _CappedProtocol


def _capped_protocol_class() -> type:
    from aiosmtplib.protocol import SMTPProtocol

    class CappedProtocol(SMTPProtocol):
        """aiosmtplib's protocol with a cap on the bytes read per connection."""

        _egov_read = 0

        def data_received(self, data: bytes) -> None:
            self._egov_read += len(data)
            if self._egov_read <= MAX_READ:
                super().data_received(data)
                return
            transport = self.transport
            if not self._connection_lost:
                self.connection_lost(ReplyTooLong(f"the server sent more than {MAX_READ} bytes"))
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()

    return CappedProtocol


_CappedProtocol: type | None = None
