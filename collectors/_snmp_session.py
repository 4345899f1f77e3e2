"""One run's conversation with one SNMP agent: a connected UDP socket, retries, v3 discovery, GET and walks.

Every wait is bounded by the request timeout and by what is left of the run; replies that do not decode or do
not match the request in flight are dropped and counted, never raised. The socket is connected, so the kernel
drops datagrams from any other address or port.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from typing import Any, Literal

from agent.errors import ConnectionFailed, Outcome, ProbeError, ProbeTimeout, ProtocolError
from collectors._lru import LruMap
from collectors._snmp_ber import (
    END_OF_MIB_VIEW,
    EXCEPTION_TAGS,
    GET,
    GET_BULK,
    GET_NEXT,
    REPORT,
    RESPONSE,
    BerError,
    Oid,
    Pdu,
    VarBind,
    decode_community_message,
    encode_community_message,
    encode_pdu,
    format_oid,
)
from collectors._snmp_usm import EngineState, Usm, UsmError, V3Message, decode_v3, report_reason
from collectors.base import ProbeContext

ERROR_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
                "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
                "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
                "inconsistentName")
_REPORT_ADVICE = {
    "unknown_user_name": "the device does not know this username",
    "wrong_digest": "wrong auth password or auth_protocol",
    "decryption_error": "wrong priv password or priv_protocol (AES192/AES256 are Blumenthal, AES192C/AES256C "
                        "Reeder)",
    "unsupported_security_level": "the user does not exist at this security_level on the device",
    "unknown_context": "the device does not know this context_name",
    "unavailable_context": "the device cannot serve this context_name now",
    "not_in_time_window": "the device's engine time keeps disagreeing",
    "unknown_engine_id": "the device's engine id keeps changing",
}
_AUTHORIZATION_ERROR = 16
_ENGINES: LruMap[tuple[str, int], EngineState] = LruMap(4096)
# Weak values: a device's lock lives only while a session to it does (asyncio.Lock binds to its event loop).
_DEVICE_LOCKS: weakref.WeakValueDictionary[tuple[str, int], asyncio.Lock] = weakref.WeakValueDictionary()


class AuthFailed(ProbeError):
    """The device refused our credentials (v3 report) or answered with an unusable security level."""

    outcome = Outcome.AUTH_FAILED

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(f"{message} [{reason}]")
        self.reason = reason


class RowCapExceeded(ProtocolError):
    """The run collected more varbinds than max_rows."""


class RowLimit:
    """The cap on varbinds one run may collect."""

    def __init__(self, max_rows: int) -> None:
        self.left = max_rows
        self.max_rows = max_rows

    def take(self, count: int) -> None:
        """Account for `count` more varbinds; ProtocolError once the cap is passed."""
        self.left -= count
        if self.left < 0:
            raise RowCapExceeded(f"more than max_rows={self.max_rows} varbinds in one run; walk stopped")


class Session:
    """Requests to one agent with one set of credentials; counts packets sent, retried and dropped."""

    def __init__(self, ctx: ProbeContext, host: str, port: int, version: Literal[1, 2, 3], community: bytes,
                 usm: Usm | None, timeout: float, retries: int) -> None:
        self.ctx = ctx
        self.host, self.port = host, port
        self.version = version
        self.community = community
        self.usm = usm
        self.timeout = timeout
        self.retries = retries
        self.packets_sent = 0
        self.packets_retried = 0
        self.dropped = 0
        self._next = int.from_bytes(os.urandom(4), "big") & 0x3FFFFFFF
        self._receiver = _Receiver()
        self._transport: asyncio.DatagramTransport | None = None
        self._rejection = ""
        self._heard = False
        self.engine = _engine(host, port) if version == 3 else EngineState()
        self._device_lock = _device_lock(host, port)

    async def __aenter__(self) -> Session:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: self._receiver, remote_addr=(self.host, self.port))
        except OSError as err:
            raise ConnectionFailed(f"cannot open a UDP socket to {self._where}: {err.strerror or err}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    async def request(self, pdu_type: int, oids: list[Oid], non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Pdu:
        """Send one request (with retries) and return the matching response PDU; raises ProbeError subclasses."""
        if self.version == 3 and not self.engine.engine_id:
            await self._discover()
        request_id = self._id()
        pdu = encode_pdu(pdu_type, request_id, oids, non_repeaters, max_repetitions)
        if self.version != 3:
            packet = encode_community_message(self.version - 1, self.community, pdu)
            reply, _ = await self._exchange(packet, request_id)
            return reply
        assert self.usm is not None
        for _ in range(3):
            msg_id = self._id()
            try:
                reply, _ = await self._exchange(self.usm.wrap(msg_id, pdu, self.engine), msg_id)
            except ProbeTimeout:
                if self.usm.priv and await self._answers_discovery():
                    raise AuthFailed(f"{self._where} answers engine discovery but not encrypted requests: "
                                     f"{_REPORT_ADVICE['decryption_error']}", "decryption_error") from None
                raise
            if reply.type != REPORT:
                return reply
            reason = report_reason(reply)
            if reason == "unknown_engine_id":
                self.engine.engine_id = b""
                await self._discover()
            elif reason != "not_in_time_window":
                raise AuthFailed(f"{self._where} refused the request: {reason} ({_REPORT_ADVICE.get(reason, '?')})",
                                 reason)
            self.ctx.log("device reported %s; sending again with its engine id, boots and time", reason)
        raise AuthFailed(f"{self._where} keeps refusing the request: {reason} ({_REPORT_ADVICE[reason]})", reason)

    async def _answers_discovery(self) -> bool:
        """Whether the device answered this run, or answers a discovery now (one attempt, if time is left)."""
        if self._heard:
            return True
        retries, self.retries = self.retries, 0
        try:
            await self._discover()
        except ProbeError:
            return False
        finally:
            self.retries = retries
        return True

    async def _discover(self) -> None:
        assert self.usm is not None
        msg_id = self._id()
        packet = self.usm.discovery_message(msg_id, encode_pdu(GET, msg_id, []))
        _, message = await self._exchange(packet, msg_id)
        if message is None or not message.engine_id:
            raise ProtocolError(f"{self._where} answered engine discovery without an engine id")
        self.engine.learn(message.engine_id, message.boots, message.time)
        self.ctx.log("discovered engine id %s (boots %d, time %d)", message.engine_id.hex(), message.boots,
                     message.time)

    async def _exchange(self, packet: bytes, match_id: int) -> tuple[Pdu, V3Message | None]:
        """One request with its retries, while no other check of this agent has a request at the same device."""
        try:
            async with asyncio.timeout_at(self.ctx.step_deadline()):
                await self._device_lock.acquire()
        except TimeoutError:
            raise ProbeTimeout(f"the run's deadline passed while another check had a request at {self._where}"
                               ) from None
        try:
            return await self._exchange_alone(packet, match_id)
        finally:
            self._device_lock.release()

    async def _exchange_alone(self, packet: bytes, match_id: int) -> tuple[Pdu, V3Message | None]:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        for attempt in range(self.retries + 1):
            wait = min(self.timeout, self.ctx.remaining())
            if wait <= 0:
                raise ProbeTimeout(f"the run's deadline passed while waiting for {self._where}")
            self._transport.sendto(packet)
            self.packets_sent += 1
            if attempt:
                self.packets_retried += 1
            until = loop.time() + wait
            while (left := until - loop.time()) > 0:
                try:
                    data = await self._receiver.next(left)
                except ConnectionRefusedError:
                    raise ConnectionFailed(f"{self._where} refused the datagram (nothing listens on udp/"
                                           f"{self.port})") from None
                except OSError as err:
                    raise ConnectionFailed(f"cannot reach {self._where}: {err.strerror or err}") from None
                if data is None:
                    break
                accepted = self._accept(data, match_id)
                if accepted is not None:
                    self._heard = True
                    return accepted
        if self._rejection:
            hint = f"; last reply rejected: {self._rejection}"
        elif self.version != 3:
            hint = " (wrong community, or not allowed by the device's ACL?)"
        elif self.usm is not None and self.usm.priv and self.engine.engine_id:
            hint = (" (wrong priv password or priv_protocol? devices drop what they cannot decrypt; AES192/AES256 "
                    "are Blumenthal, AES192C/AES256C Reeder)")
        else:
            hint = ""
        if self.ctx.remaining() <= 0:
            raise ProbeTimeout(f"the run's deadline passed while waiting for {self._where}{hint}")
        raise ProbeTimeout(f"no response from {self._where} to {self.retries + 1} attempts of "
                           f"{self.timeout:g}s{hint}")

    def _accept(self, data: bytes, match_id: int) -> tuple[Pdu, V3Message | None] | None:
        try:
            if self.version != 3:
                version, _, pdu = decode_community_message(data)
                if version == self.version - 1 and pdu.request_id == match_id and pdu.type in (RESPONSE, REPORT):
                    return pdu, None
            else:
                message = decode_v3(data)
                if message.msg_id == match_id:
                    assert self.usm is not None
                    return self.usm.unwrap(message, data, self.engine), message
        except BerError as err:
            self._rejection = f"not SNMP ({err})"
        except UsmError as err:
            self._rejection = str(err)
        self.dropped += 1
        return None

    def _id(self) -> int:
        self._next = (self._next + 1) & 0x7FFFFFFF
        return self._next

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"


async def get(session: Session, oids: list[Oid], max_oids: int, rows: RowLimit) -> list[VarBind]:
    """GET the OIDs in batches of `max_oids` (one at a time for SNMPv1); instances the device lacks are skipped."""
    out: list[VarBind] = []
    step = 1 if session.version == 1 or max_oids <= 0 else max_oids
    for start in range(0, len(oids), step):
        batch = oids[start:start + step]
        pdu = await session.request(GET, batch)
        if pdu.error_status == 2 and session.version == 1:
            continue
        _check_status(pdu, batch)
        found = [vb for vb in pdu.varbinds if vb.tag not in EXCEPTION_TAGS]
        rows.take(len(found))
        out.extend(found)
    return out


async def walk(session: Session, root: Oid, max_repetitions: int, rows: RowLimit,
               allow_nonincreasing: bool = False) -> list[VarBind]:
    """Every varbind strictly under `root`, by GETBULK (GETNEXT for SNMPv1), like gosnmp's BulkWalkAll.

    Stops on leaving the subtree or at endOfMibView; ProtocolError on an OID that does not increase (unless
    allowed) and at the row cap. A root that is itself an instance, with nothing under it, is fetched by GET.
    """
    out: list[VarBind] = []
    end = (*root[:-1], root[-1] + 1)  # the first OID after the subtree
    last = root
    first = True
    while True:
        if session.version == 1:
            pdu = await session.request(GET_NEXT, [last])
            if pdu.error_status == 2:
                return out
        else:
            pdu = await session.request(GET_BULK, [last], 0, max_repetitions)
        _check_status(pdu, [last])
        if not pdu.varbinds:
            return out
        taken = 0
        for vb in pdu.varbinds:
            oid = vb.oid
            if vb.tag in EXCEPTION_TAGS or not root < oid < end:
                rows.take(taken)
                if first and taken == 0 and vb.tag != END_OF_MIB_VIEW:
                    return await get(session, [root], 1, rows)
                return out
            if oid <= last and not allow_nonincreasing:
                raise ProtocolError(f"{session._where} returned OID {format_oid(oid)} after "
                                    f"{format_oid(last)} (not increasing); set allow_nonincreasing_oids to accept")
            last = oid
            out.append(vb)
            taken += 1
        rows.take(taken)
        first = False


def _check_status(pdu: Pdu, oids: list[Oid]) -> None:
    if pdu.error_status:
        name = ERROR_STATUS[pdu.error_status] if pdu.error_status < len(ERROR_STATUS) else "?"
        at = oids[pdu.error_index - 1] if 0 < pdu.error_index <= len(oids) else None
        where = f" at {format_oid(at)}" if at else ""
        if pdu.error_status == _AUTHORIZATION_ERROR:
            raise AuthFailed(f"device refused access: {name}{where} (the user's security level or view does not "
                             "allow it)", "authorization_error")
        raise ProtocolError(f"device returned error-status {name} ({pdu.error_status}){where}")


def _device_lock(host: str, port: int) -> asyncio.Lock:
    """The lock that keeps this agent to one request in flight per device, shared by the checks polling it."""
    lock = _DEVICE_LOCKS.get((host, port))
    if lock is None:
        lock = _DEVICE_LOCKS[(host, port)] = asyncio.Lock()
    return lock


def _engine(host: str, port: int) -> EngineState:
    return _ENGINES.get_or_create((host, port), EngineState)


class _Receiver(asyncio.DatagramProtocol):
    """Queues datagrams and socket errors for the one coroutine waiting on them."""

    def __init__(self) -> None:
        self._inbox: deque[bytes] = deque(maxlen=64)
        self._error: OSError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._inbox.append(data)
        self._wake()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self._error = exc
            self._wake()

    async def next(self, wait: float) -> bytes | None:
        """The next datagram, None after `wait` seconds; raises a socket error reported meanwhile."""
        if not self._inbox and self._error is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(wait, _set_done, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._inbox.popleft() if self._inbox else None

    def _wake(self) -> None:
        if self._waiter is not None:
            _set_done(self._waiter)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

