"""Side by side with blackbox_exporter: the same modules against the same local targets give the same answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.http import EXPIRED_NOT_AFTER, Blackbox, Certs, Servers, Site, parse_metrics
from pydantic import TypeAdapter

from agent.config import module_model
from agent.probe_once import probe_once

pytestmark = pytest.mark.slow

Setup = tuple[Blackbox, dict[str, Any], dict[str, Site], Certs]
COMPARED = ("probe_success", "probe_http_status_code", "probe_http_redirects", "probe_http_ssl",
            "probe_http_version", "probe_http_content_length", "probe_ip_protocol")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("blackbox")
    certs = Certs(directory)
    # One set of http settings, written once: blackbox's option names are ours.
    http = {
        "http_2xx": {"preferred_ip_protocol": "ip4"},
        "http_no_redirects": {"preferred_ip_protocol": "ip4", "follow_redirects": False},
        "http_ca": {"preferred_ip_protocol": "ip4", "tls_config": {"ca_file": str(certs.ca_file)}},
        "http_regex": {"preferred_ip_protocol": "ip4", "fail_if_body_not_matches_regexp": ["Xin chào"],
                       "fail_if_header_matches": [{"header": "X-Frame-Options", "regexp": "ALLOW"}]},
    }
    timeouts = {"http_2xx": "1s"}
    blackbox = Blackbox({name: {"prober": "http", "timeout": timeouts.get(name, "5s"), "http": settings}
                         for name, settings in http.items()}, directory)
    ours = {name: TypeAdapter(module_model()).validate_python(
        {"kind": "http", "timeout": timeouts.get(name, "5s"), "http": settings}) for name, settings in http.items()}
    servers = Servers()
    sites = {"plain": servers.site(), **{which: servers.site(tls=certs.server_context(which))
                                         for which in ("valid", "expired", "wrong_host", "self_signed")}}
    yield blackbox, ours, sites, certs
    servers.close()
    blackbox.stop()


@pytest.mark.parametrize(("site", "path", "module"), [
    ("plain", "/", "http_2xx"),
    ("plain", "/status/404", "http_2xx"),
    ("plain", "/status/500", "http_2xx"),
    ("plain", "/redirect/3", "http_2xx"),
    ("plain", "/redirect/3", "http_no_redirects"),
    ("plain", "/loop", "http_2xx"),
    ("plain", "/slow", "http_2xx"),
    ("plain", "/", "http_regex"),
    ("plain", "/status/200", "http_regex"),
    ("valid", "/", "http_ca"),
    ("valid", "/redirect/2", "http_ca"),
    ("expired", "/", "http_ca"),
    ("wrong_host", "/", "http_ca"),
    ("self_signed", "/", "http_ca"),
    ("valid", "/", "http_2xx"),
])
def test_same_answers_as_blackbox(setup: Setup, site: str,
                                  path: str, module: str) -> None:
    blackbox, ours, sites, certs = setup
    target = sites[site].url + path
    theirs = blackbox.probe(module, target)
    text, result = asyncio.run(probe_once(None, module, ours[module], target))
    mine = parse_metrics(text)
    for name in COMPARED:
        assert (name, mine.get(name)) == (name, theirs.get(name)), f"{result.outcome}: {result.error}"
    assert mine.get("probe_failed_due_to_regex", 0) == theirs.get("probe_failed_due_to_regex", 0)
    expiry = "probe_ssl_earliest_cert_expiry"
    if site == "expired":
        # blackbox drops the certificate with the failed handshake; we keep its expiry (so expiry alerts stay on)
        assert expiry not in theirs
        assert mine[expiry] == EXPIRED_NOT_AFTER.timestamp()
    elif theirs.get("probe_http_ssl") == 1:
        assert mine[expiry] == theirs[expiry] == certs.not_after(site)
        assert mine["probe_ssl_last_chain_expiry_timestamp_seconds"] == theirs[
            "probe_ssl_last_chain_expiry_timestamp_seconds"]
        assert {k for k in mine if k.startswith("probe_tls_version_info")} == {
            k for k in theirs if k.startswith("probe_tls_version_info")}
    elif site == "plain":
        assert expiry not in theirs and expiry not in mine
    phases = {k for k in theirs if k.startswith("probe_http_duration_seconds")}
    assert phases <= set(mine)


def test_phase_timings_are_of_the_same_size(setup: Setup) -> None:
    blackbox, ours, sites, _ = setup
    target = sites["valid"].url + "/"
    theirs = [blackbox.probe("http_ca", target) for _ in range(5)]
    mine = [parse_metrics(asyncio.run(probe_once(None, "http_ca", ours["http_ca"], target))[0]) for _ in range(5)]
    for phase in ("connect", "tls", "processing"):
        key = f"probe_http_duration_seconds{{{phase}}}"
        theirs_best, mine_best = min(m[key] for m in theirs), min(m[key] for m in mine)
        assert 0 < mine_best < 0.05 and 0 < theirs_best < 0.05, (phase, mine_best, theirs_best)
