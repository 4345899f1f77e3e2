"""Real nginx (Debian package) on 127.0.0.1 serving a directory over TLS, as deploy/central/config-publishing.md.

nginx runs in the foreground (`-g 'daemon off;'`) with its own prefix, config, logs and temp dirs under a test
directory, and is stopped by its PID (terminate, wait, kill after a timeout). TLS uses a trustme CA; a client
certificate can be required (`ssl_verify_client on`), as the province would for its offices.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import trustme
from testlib import free_port, wait_for

_CONFIG = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ application/yaml yaml; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {prefix}/server.pem;
        ssl_certificate_key {prefix}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
{client_auth}
        root {root};
        autoindex off;
        location / {{ try_files $uri =404; }}
    }}
}}
"""


@dataclass
class Nginx:
    """An nginx serving `root` over HTTPS on 127.0.0.1:`port`; restartable on the same port."""

    prefix: Path
    root: Path
    port: int
    ca: trustme.CA
    client_ca: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA agents must name to trust this server."""
        return self.prefix / "ca.pem"

    def start(self) -> None:
        """Start in the foreground and wait until the port accepts connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-e",
             str(self.prefix / "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=(self.prefix / "stderr.log").open("wb"))
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"nginx exited with {process.returncode}: {self.log()}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(listening, timeout=20)

    def stop(self) -> None:
        """Stop by PID: terminate, then kill after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        """nginx's error log and stderr."""
        return "".join(path.read_text(errors="replace") for path in (self.prefix / "error.log",
                                                                     self.prefix / "stderr.log") if path.exists())

    def publish(self, relative: str, data: bytes) -> Path:
        """Write a file under the served root atomically (rename), as a publisher should.

        nginx's ETag and Last-Modified are the mtime in seconds and the size: two versions of the same size
        published within one second would look unchanged, so the mtime moves at least one second forward.
        """
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = path.stat().st_mtime if path.exists() else 0.0
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        temporary.chmod(0o644)
        stamp = max(time.time(), previous + 1)
        os.utime(temporary, (stamp, stamp))
        temporary.replace(path)
        return path


def make_nginx(directory: Path, ca: trustme.CA | None = None, client_ca: trustme.CA | None = None) -> Nginx:
    """An nginx set up (not started) under `directory`, serving `directory/www`; client certs when client_ca."""
    ca = ca or trustme.CA()
    prefix = directory / "nginx"
    root = directory / "www"
    for folder in (prefix / "tmp", root):
        folder.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.private_key_pem.write_to_path(str(prefix / "server.key"))
    leaf.cert_chain_pems[0].write_to_path(str(prefix / "server.pem"))
    ca.cert_pem.write_to_path(str(prefix / "ca.pem"))
    client_auth = ""
    client_ca_path: Path | None = None
    if client_ca is not None:
        client_ca_path = prefix / "client-ca.pem"
        client_ca.cert_pem.write_to_path(str(client_ca_path))
        client_auth = f"        ssl_client_certificate {client_ca_path};\n        ssl_verify_client on;"
    port = free_port()
    # Workers run as nobody by default; the test's files are root's, so run them as the test's user.
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(_CONFIG.format(prefix=prefix, port=port, root=root, user=user,
                                                      client_auth=client_auth), encoding="utf-8")
    return Nginx(prefix, root, port, ca, client_ca_path)
