"""The probe kinds egov-agent knows, as an explicit registry."""

from __future__ import annotations

from typing import Any

from collectors import dns, host, http, icmp, mail, maillog, portal, process, register, snmp, sql, tcp
from collectors.base import CollectorSpec

COLLECTORS: dict[str, CollectorSpec[Any]] = {
    spec.kind: spec for spec in (host.SPEC, process.SPEC, icmp.SPEC, tcp.SPEC, dns.SPEC, http.SPEC, snmp.SPEC,
                                 sql.SPEC, register.SPEC, mail.SPEC, maillog.SPEC, portal.SPEC,
                                 portal.PUBLICSERVICE_SPEC)
}
