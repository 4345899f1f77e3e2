"""maillog against the logs of Debian's real Postfix and Dovecot (tests/fakes/mailstack.py), on loopback."""

from __future__ import annotations

import asyncio
import imaplib
import poplib
import smtplib
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from fakes.mailstack import HOST, MailStack
from testlib import wait_for

from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS
from collectors.maillog import MaillogSettings

A, B = "000.00.20.H49", "000.00.21.H49"
USERS = {
    "an@sonoivu.invalid": "an-password-1",
    "binh@sonoivu.invalid": "binh-password-2",
    "chi@stc.invalid": "chi-password-3",
    "dung@stc.invalid": "dung-password-4",
}


async def send(stack: MailStack, user: str, to: str, subject: str) -> None:
    """Submit one message with aiosmtplib: submission port, STARTTLS, AUTH."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = user, to, subject
    message.set_content("maillog test\n")
    await aiosmtplib.send(message, hostname=HOST, port=stack.ports["submission"], start_tls=True,
                          tls_context=stack.client_context(), username=user, password=stack.password(user),
                          timeout=10)


def imap_login(stack: MailStack, user: str) -> None:
    with imaplib.IMAP4(HOST, stack.ports["imap"], timeout=10) as imap:
        imap.starttls(ssl_context=stack.client_context())
        imap.login(user, stack.password(user))
        imap.select("INBOX")
        imap.logout()


def pop3_login(stack: MailStack, user: str) -> None:
    pop = poplib.POP3(HOST, stack.ports["pop3"], timeout=10)
    try:
        pop.stls(context=stack.client_context())
        pop.user(user)
        pop.pass_(stack.password(user))
        pop.stat()
    finally:
        pop.quit()


def failed_submission(stack: MailStack, user: str) -> None:
    """One wrong password through submission, from its own source address (Dovecot's anvil penalty is per IP)."""
    with smtplib.SMTP(HOST, stack.ports["submission"], timeout=10, source_address=("127.0.0.7", 0)) as smtp:
        smtp.starttls(context=stack.client_context())
        smtp.ehlo()
        smtp.user, smtp.password = user, "wrong-password"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.auth("PLAIN", smtp.auth_plain)


def values(result: ProbeResult, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(value for _, value in sample.labels): sample.value
            for sample in result.samples if sample.name == name}


@pytest.mark.slow
def test_real_postfix_and_dovecot_logs_count_exactly_the_active_accounts(tmp_path: Path) -> None:
    csv_file = tmp_path / "accounts.csv"
    csv_file.write_text("account,org_id\n" + "".join(
        f"{user},{A if user.endswith('@sonoivu.invalid') else B}\n" for user in USERS), encoding="utf-8")
    with MailStack(users=USERS) as stack:
        asyncio.run(send(stack, "an@sonoivu.invalid", "chi@stc.invalid", "one"))
        asyncio.run(send(stack, "chi@stc.invalid", "an@sonoivu.invalid", "two"))
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):  # outbound mail is refused at RCPT: a NOQUEUE reject
            asyncio.run(send(stack, "chi@stc.invalid", "nobody@elsewhere.invalid", "three"))
        imap_login(stack, "binh@sonoivu.invalid")
        pop3_login(stack, "chi@stc.invalid")
        failed_submission(stack, "dung@stc.invalid")

        def logged() -> bool:
            postfix = stack.postfix_log.read_text(errors="replace")
            dovecot = stack.dovecot_log.read_text(errors="replace")
            return (postfix.count("status=sent") == 2 and "NOQUEUE: reject: RCPT" in postfix
                    and "authentication failed" in postfix and "pop3-login: Info: Login:" in dovecot
                    and "imap-login: Info: Login:" in dovecot)

        wait_for(logged, timeout=20)
        settings = MaillogSettings(files=[str(stack.postfix_log), str(stack.dovecot_log)],
                                   domains={"sonoivu.invalid": A, "stc.invalid": B}, accounts_csv=str(csv_file))
        job = Job("mail-usage", "mail.invalid", "mail_usage", "mail", 60.0, 10.0, COLLECTORS["maillog"], settings,
                  state_dir=str(tmp_path / "state"))
        result = asyncio.run(run_job(job))
        again = asyncio.run(run_job(job))  # nothing new: the same numbers, no double count

    assert result.success, result.error
    for run in (result, again):
        assert values(run, "egov_mail_active_accounts") == {
            (A, "1d"): 2, (A, "7d"): 2, (A, "30d"): 2, (B, "1d"): 1, (B, "7d"): 1, (B, "30d"): 1}
        by_activity = values(run, "egov_mail_active_accounts_by_activity")
        assert {key: by_activity[(*key[:1], "1d", *key[1:])] for key in ((A, "sent"), (A, "read"), (B, "sent"),
                                                                         (B, "read"))} == {
            (A, "sent"): 1, (A, "read"): 1, (B, "sent"): 1, (B, "read"): 1}
        assert values(run, "egov_mail_accounts") == {(A,): 2, (B,): 2}
        assert values(run, "egov_mail_deliveries_total") == {("sent",): 2, ("bounced",): 0, ("deferred",): 0}
        assert values(run, "postfix_smtpd_messages_processed_total") == {("PLAIN",): 2}
        assert values(run, "postfix_smtpd_messages_rejected_total") == {("550",): 1}
        assert values(run, "postfix_smtpd_sasl_authentication_failures_total") == {(): 1}
        assert values(run, "egov_mail_log_lines_total")[("malformed",)] == 0
    assert values(again, "egov_mail_log_lines_total") == values(result, "egov_mail_log_lines_total")
