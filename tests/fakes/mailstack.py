"""Debian's real Postfix and Dovecot on 127.0.0.1, in a temp dir, for mail tests (TESTBED.md section 5).

    with MailStack() as stack:                  # or stack = MailStack().start(); ...; stack.stop()
        stack.submit("alice@testbed.invalid", "bob@testbed.invalid", "hello")
        stack.ports["imap"], stack.password("bob@testbed.invalid"), stack.cert_file, stack.postfix_log

Listeners (all 127.0.0.1, free ports chosen at start, keys of `ports`):
  smtp        plain SMTP, STARTTLS offered, no AUTH; accepts mail for the stack's domains only (port 25-like)
  submission  STARTTLS required, AUTH (PLAIN, LOGIN) through Dovecot only after STARTTLS (587-like)
  smtps       TLS from the first byte, AUTH through Dovecot (465-like)
  imap        IMAP with STARTTLS (143-like)       imaps   IMAP over TLS (993-like)
  pop3        POP3 with STARTTLS (110-like)       pop3s   POP3 over TLS (995-like)

Users are virtual (passwd-file, {PLAIN} scheme); each has a Maildir under `maildir(user)`; their domains are the
virtual mailbox domains, mail to any other domain bounces locally (nothing leaves the machine). The certificate is
self-signed for localhost and 127.0.0.1 (`cert_file` is also the CA to trust). Postfix logs to `postfix_log`
(maillog_file), Dovecot to `dovecot_log`, in the usual syslog-like formats. Failed logins cost no delay
(auth_failure_delay = 0), but Dovecot's anvil still slows repeated failures from one IP: send each failed login
from its own loopback source address (127.0.0.2, 127.0.0.3, ...).

Both masters run in the foreground as children of the test (Popen), stopped by PID: SIGTERM, wait, SIGKILL after
a timeout. Start-up takes about 0.2 s, stopping about 1.1 s; readiness is read from /proc/net/tcp, so no probe
connection shows in the logs.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from testlib import free_port

DEFAULT_DOMAIN = "testbed.invalid"
HOST = "127.0.0.1"
LISTENERS = ("smtp", "submission", "smtps", "imap", "imaps", "pop3", "pop3s")
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
_MAIL_UID = 8  # Debian's `mail` user and group own the Maildirs
_QUEUE_DIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "maildrop",
               "private", "public", "saved", "trace")
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


class MailStack:
    """A Postfix + Dovecot pair on loopback; `users` maps full addresses to passwords (random ones by default)."""

    def __init__(self, users: dict[str, str] | None = None, directory: str | Path | None = None) -> None:
        self.users = dict(users) if users is not None else {
            f"{name}@{DEFAULT_DOMAIN}": secrets.token_urlsafe(12) for name in ("alice", "bob", "probe")}
        self.domains = sorted({address.rpartition("@")[2] for address in self.users})
        # Unix socket paths must stay under 107 bytes: a short private dir, not pytest's long tmp_path.
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="mailstack-", dir="/tmp"))
        self.ports: dict[str, int] = {}
        self.cert_file = self.directory / "tls/cert.pem"
        self.cert_not_after: float = 0.0
        self.postfix_log = self.directory / "log/postfix.log"
        self.dovecot_log = self.directory / "log/dovecot.log"
        self._postfix: subprocess.Popen[bytes] | None = None
        self._dovecot: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> MailStack:
        """Write the configs, start Dovecot then Postfix, wait (bounded) until every listener is up."""
        try:
            self._prepare()
            conf = str(self.directory / "dovecot/dovecot.conf")
            self._dovecot = self._spawn("dovecot", ["dovecot", "-F", "-c", conf])
            _wait(lambda: (self.directory / "dovecot/run/auth-postfix").exists(), "Dovecot's auth socket",
                  self._dovecot, self.dovecot_log)
            self._postfix = self._spawn("postfix", [POSTFIX_MASTER, "-c", str(self.directory / "postfix"), "-s"])
            wanted = set(self.ports.values())
            _wait(lambda: wanted <= _listening_ports(), "every listener", self._postfix, self.postfix_log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Postfix and Dovecot by PID (SIGTERM, then SIGKILL after a timeout); remove a temp dir it made."""
        running = [p for p in (self._postfix, self._dovecot) if p is not None and p.poll() is None]
        for process in running:  # both at once: each master takes about a second to stop its children
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT)
        self._postfix = self._dovecot = None
        if self._own_directory and os.environ.get("MAILSTACK_KEEP") != "1":
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> MailStack:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running masters ({'postfix': ..., 'dovecot': ...})."""
        running = {"postfix": self._postfix, "dovecot": self._dovecot}
        return {name: process.pid for name, process in running.items() if process is not None}

    # --- helpers for tests -------------------------------------------------------------------------------------

    def target(self, listener: str) -> str:
        """host:port of a listener, e.g. target('submission') -> '127.0.0.1:40123'."""
        return f"{HOST}:{self.ports[listener]}"

    def password(self, user: str) -> str:
        """The password of a user (full address)."""
        return self.users[user]

    def maildir(self, user: str) -> Path:
        """The user's Maildir (its new/ and cur/ hold one file per message)."""
        local, _, domain = user.rpartition("@")
        return self.directory / "vmail" / domain / local

    def messages(self, user: str) -> list[Path]:
        """Files of the messages in the user's Maildir INBOX (new and cur), sorted by name."""
        box = self.maildir(user)
        return sorted(path for sub in ("new", "cur") if (box / sub).is_dir() for path in (box / sub).iterdir())

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts the stack's certificate."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    def submit(self, user: str, to: str, subject: str, body: str = "test\n", source_address: str = HOST) -> None:
        """Send a message as `user` through submission (STARTTLS + AUTH PLAIN) with smtplib; raises on failure."""
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = user, to, subject
        message.set_content(body)
        with smtplib.SMTP(HOST, self.ports["submission"], timeout=10, source_address=(source_address, 0)) as smtp:
            smtp.starttls(context=self.client_context())
            smtp.login(user, self.users[user])
            smtp.send_message(message)

    # --- private -----------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        root = self.directory
        root.chmod(0o755)  # postfix, dovecot and dovenull must traverse it
        for sub in ("postfix", "dovecot/run", "dovecot/state", "log", "vmail", "tls", "spool", "data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chown(root / "vmail", _MAIL_UID, _MAIL_UID)
        shutil.chown(root / "data", "postfix", "postfix")
        self.ports = {name: free_port() for name in LISTENERS}
        self._make_certificate()
        (root / "postfix/main.cf").write_text(self._main_cf(), encoding="utf-8")
        (root / "postfix/master.cf").write_text(self._master_cf(), encoding="utf-8")
        (root / "postfix/vmailbox").write_text(
            "".join(f"{user} {self._relative_maildir(user)}/\n" for user in self.users), encoding="utf-8")
        users_file = root / "dovecot/users"
        users_file.write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items()),
                              encoding="utf-8")
        shutil.chown(users_file, group="dovecot")
        users_file.chmod(0o640)
        (root / "dovecot/dovecot.conf").write_text(self._dovecot_conf(), encoding="utf-8")
        stamp = time.time() - 10  # Postfix waits until its config and table files are a few seconds old
        for path in (root / "postfix").iterdir():
            os.utime(path, (stamp, stamp))
        _run(["doveconf", "-c", str(root / "dovecot/dovecot.conf"), "-n"], "doveconf")
        _make_queue(root / "spool")

    def _make_certificate(self) -> None:
        key = self.directory / "tls/key.pem"
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
              "/CN=mail.testbed.invalid", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
              "-keyout", str(key), "-out", str(self.cert_file)], "openssl")
        self.cert_file.chmod(0o644)
        end = _run(["openssl", "x509", "-noout", "-enddate", "-in", str(self.cert_file)], "openssl x509")
        text = end.split("=", 1)[1].strip()
        self.cert_not_after = dt.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC).timestamp()

    def _relative_maildir(self, user: str) -> str:
        local, _, domain = user.rpartition("@")
        return f"{domain}/{local}"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.directory / f"log/{name}.stdout").open("wb") as out:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def _main_cf(self) -> str:
        root = self.directory
        return f"""\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {self.postfix_log}
maillog_file_prefixes = /var, /dev/stdout, {root}/log
myhostname = mail.{DEFAULT_DOMAIN}
mydomain = {DEFAULT_DOMAIN}
myorigin = $mydomain
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
smtpd_peername_lookup = no
default_transport = error:outbound mail disabled in testbed
relay_transport = error:outbound mail disabled in testbed
virtual_mailbox_domains = {", ".join(self.domains)}
virtual_mailbox_base = {root}/vmail
virtual_mailbox_maps = texthash:{root}/postfix/vmailbox
virtual_minimum_uid = {_MAIL_UID}
virtual_uid_maps = static:{_MAIL_UID}
virtual_gid_maps = static:{_MAIL_UID}
smtpd_tls_cert_file = {self.cert_file}
smtpd_tls_key_file = {root}/tls/key.pem
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = {root}/dovecot/run/auth-postfix
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
"""

    def _master_cf(self) -> str:
        auth = ("  -o smtpd_sasl_auth_enable=yes\n"
                "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
                "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n")
        services = (f"{HOST}:{self.ports['smtp']} inet n - n - - smtpd\n"
                    f"{HOST}:{self.ports['submission']} inet n - n - - smtpd\n"
                    "  -o syslog_name=postfix/submission\n"
                    "  -o smtpd_tls_security_level=encrypt\n"
                    "  -o smtpd_tls_auth_only=yes\n" + auth +
                    f"{HOST}:{self.ports['smtps']} inet n - n - - smtpd\n"
                    "  -o syslog_name=postfix/smtps\n"
                    "  -o smtpd_tls_wrappermode=yes\n" + auth)
        return services + """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

    def _dovecot_conf(self) -> str:
        root = self.directory

        def listener(service: str, name: str, ssl_on: bool) -> str:
            return (f"  inet_listener {name} {{\n    address = {HOST}\n    port = {self.ports[name]}\n"
                    f"    ssl = {'yes' if ssl_on else 'no'}\n  }}\n")

        return f"""\
protocols = imap pop3
listen = {HOST}
base_dir = {root}/dovecot/run
state_dir = {root}/dovecot/state
instance_name = dovecot-mailstack-{root.name}
log_path = {self.dovecot_log}
info_log_path = {self.dovecot_log}
ssl = yes
ssl_cert = <{self.cert_file}
ssl_key = <{root}/tls/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = {_MAIL_UID}
first_valid_gid = {_MAIL_UID}
mail_location = maildir:{root}/vmail/%d/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={root}/vmail/%d/%n
}}
service imap-login {{
{listener("imap", "imap", False)}{listener("imap", "imaps", True)}}}
service pop3-login {{
{listener("pop3", "pop3", False)}{listener("pop3", "pop3s", True)}}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


def _make_queue(spool: Path) -> None:
    """Postfix's queue directories with the owners and modes `postfix post-install` gives (it takes 1.7 s)."""
    for name in _QUEUE_DIRS:
        path = spool / name
        path.mkdir(exist_ok=True)
        mode, group = (0o730, "postdrop") if name == "maildrop" else (0o710, "postdrop") if name == "public" else (
            0o700, "root")
        shutil.chown(path, "postfix", group)
        path.chmod(mode)
    (spool / "pid").mkdir(mode=0o755, exist_ok=True)


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{what} failed with status {done.returncode}: {output}")
    return done.stdout.decode(errors="replace")


def _wait(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            state = f"exited with {process.returncode}" if process.returncode is not None else "still starting"
            raise RuntimeError(f"mail stack: waiting for {what}, {process.args[0]} {state}; log tail:\n{tail}")
        time.sleep(0.02)


def _listening_ports() -> set[int]:
    """Local ports in LISTEN state on IPv4 (state 0A in /proc/net/tcp)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
