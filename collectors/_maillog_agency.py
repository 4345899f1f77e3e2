"""Which agency (org_id) a mail account belongs to: a CSV of accounts first, then the mail domain."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

UNMAPPED = "unknown"
"""The agency label of accounts neither the CSV nor the domain map places."""
ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_CSV_BYTES = 64 << 20


@dataclass
class AccountList:
    """The accounts CSV as read: account -> org_id, and the problems found (file:line: what)."""

    accounts: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def per_agency(self) -> dict[str, int]:
        """org_id -> number of accounts."""
        counts: dict[str, int] = {}
        for org_id in self.accounts.values():
            counts[org_id] = counts.get(org_id, 0) + 1
        return counts


class AgencyMap:
    """account (lower-case bytes) -> org_id; the CSV wins over the domain, unknown accounts get UNMAPPED."""

    def __init__(self, domains: dict[str, str], accounts: dict[str, str], default_domain: str | None) -> None:
        self._domains = {domain.encode(): org_id for domain, org_id in domains.items()}
        self._accounts = {account.encode(): org_id for account, org_id in accounts.items()}
        self._suffix = b"@" + default_domain.encode() if default_domain else b""

    def qualify(self, account: bytes) -> bytes:
        """The account with the default domain added when it has none."""
        if self._suffix and b"@" not in account:
            return account + self._suffix
        return account

    def agency(self, account: bytes) -> str:
        """The org_id of a qualified account."""
        org_id = self._accounts.get(account)
        if org_id is not None:
            return org_id
        domain = account.rpartition(b"@")[2]
        while domain:
            org_id = self._domains.get(domain)
            if org_id is not None:
                return org_id
            domain = domain.partition(b".")[2]  # a subdomain belongs to its parent's agency unless listed itself
        return UNMAPPED


def read_accounts_csv(path: Path, default_domain: str | None) -> AccountList:
    """Read `account,org_id` rows (header required, other columns ignored); OSError when the file is unreadable."""
    result = AccountList()
    with path.open("rb") as raw:
        data = raw.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        result.problems.append(f"{path}: larger than {MAX_CSV_BYTES} bytes; only the first part is used")
        data = data[:MAX_CSV_BYTES]
    text = data.decode("utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    if "account" not in columns or "org_id" not in columns:
        result.problems.append(f"{path}:1: the header must name the columns account and org_id")
        return result
    account_at, org_at = columns.index("account"), columns.index("org_id")
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(account_at, org_at):
            result.problems.append(f"{path}:{line}: too few columns")
            continue
        account = row[account_at].strip().lower()
        org_id = row[org_at].strip()
        if default_domain and account and "@" not in account:
            account = f"{account}@{default_domain}"
        if not account or "\ufffd" in account or len(account) > 320:
            result.problems.append(f"{path}:{line}: the account is empty, too long or not UTF-8")
            continue
        if not ORG_ID.match(org_id):
            result.problems.append(f"{path}:{line}: org_id {org_id[:70]!r} is not an agency code")
            continue
        known = result.accounts.setdefault(account, org_id)
        if known != org_id:
            result.problems.append(f"{path}:{line}: the account is listed again with another org_id; the first wins")
    return result
