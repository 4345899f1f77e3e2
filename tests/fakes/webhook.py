"""An Alertmanager webhook receiver on 127.0.0.1 that keeps every notification, with its arrival time.

`WebhookReceiver().start()` in a thread; `url` for Alertmanager's `webhook_configs`; `notifications` holds the
decoded version-4 payloads (`receiver`, `status`, `alerts`, `groupLabels`, ...) in arrival order; `alerts()`
flattens them to (arrival monotonic time, receiver, alert) tuples; `stop()` at the end.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 4 * 1024 * 1024


class WebhookReceiver:
    """Records POSTed notifications; answers 200 to well-formed JSON, 400 otherwise."""

    def __init__(self) -> None:
        self.notifications: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def start(self) -> WebhookReceiver:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """Where Alertmanager posts."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def alerts(self, status: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
        """Every alert of every notification as (arrival time, receiver, alert), optionally of one status."""
        with self._lock:
            notifications = list(self.notifications)
        return [(at, body.get("receiver", ""), alert) for at, body in notifications for alert in body.get("alerts", [])
                if status is None or alert.get("status") == status]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_BODY:
                    self.send_error(400, "missing or oversized body")
                    return
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_error(400, "not JSON")
                    return
                with receiver._lock:
                    receiver.notifications.append((time.monotonic(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
