"""The HTML report opened in headless Chromium (no network): the screenshot shows the inline SVG charts."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
WIDTH, HEIGHT = 1200, 1400
# Keep Chromium off the network (TESTBED.md section 9). The flags are not enough: Debian's Chromium still asks the
# machine's resolver for update.googleapis.com (seen with strace), so it runs in a network namespace of its own
# with no interface but a down loopback; the report is a file:// page and needs none.
CHROME = ["unshare", "--net", "--", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
          "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--disable-quic", "--no-first-run", "--no-default-browser-check",
          "--host-resolver-rules=MAP * ~NOTFOUND"]


def test_html_report_renders_charts(tmp_path: Path, fleet_dir: Path, prometheus: Any) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "kpi-report", "--source", prometheus.url, "--out",
                           str(tmp_path), "--period", "2026-10", "--inventory", str(fleet_dir / "inventory.yaml"),
                           "--format", "html", "--outage-resolution", "30m"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "kpi-report-2026-10.html"
    html = page.read_text(encoding="utf-8")
    for external in ("<script", "<link", "src=", "href=\"http", "url(", "@import"):  # self-contained
        assert external not in html
    assert html.count("<svg") == 1 + 2 * 15  # the overview, then a trend and an offices chart per KPI
    shot = tmp_path / "shot.png"
    subprocess.run([*CHROME, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
                    f"--screenshot={shot}", f"file://{page}"],
                   capture_output=True, timeout=90, check=False)
    assert shot.exists()
    width, height, pixels = read_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    chart = [row[400:1100] for row in pixels[150:600]]  # the overview chart, below the heading and its table
    colours = {px for row in chart for px in row}
    assert len(colours) > 50, len(colours)  # blank or text only would be a few grey levels
    green = sum(1 for row in chart for px in row if px[1] > 100 and px[0] < 90 and px[2] < 90)
    red = sum(1 for row in chart for px in row if px[0] > 160 and px[1] < 90 and px[2] < 90)
    assert green > 500 and red > 500, (green, red)  # bars of met and of not-met KPIs


def read_png(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) into rows of pixel tuples."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[list[tuple[int, ...]]] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + predictor) & 0xFF
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        previous = line
    return width, height, rows
