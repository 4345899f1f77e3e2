"""Ambiguous successes: the receiver stored a request but the sender never saw the answer (the fault proxy's
drop_response mode). The sender sends the same bytes again, so a receiver may hold duplicates, but only identical
ones: the same series, timestamp and value, never a second value for a timestamp, and nothing missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes.fault_proxy import FaultProxy
from fakes.receivers import RawSamples, Samples, start_victoria_metrics
from fakes.rw_harness import Harness, until
from fakes.rw_receiver import FakeReceiver
from prometheus_client.parser import text_string_to_metric_families
from testlib import OFFICE_YAML, wait_for

SELECTOR = '{org_id="000.00.20.H49"}'


async def test_dropped_answers_make_the_sender_resend_the_same_bytes(tmp_path: Path) -> None:
    receiver = await FakeReceiver().start()
    proxy = FaultProxy(int(receiver.url.split(":")[2].split("/")[0])).start()
    h = Harness(tmp_path, receiver, url=f"{proxy.url}/api/v1/write")
    await h.start()
    try:
        proxy.set_mode("drop_response")
        h.feed()
        await until(lambda: proxy.dropped_responses >= 3)
        assert h.sender.stats.sent == 0 and h.queue.stats.samples == 3
        assert h.sender.stats.retries.get("network", 0) >= 2
        proxy.set_mode("pass")
        await until(lambda: h.sender.stats.sent == 3)
        assert len(receiver.accepted) >= 4 and len({r.body for r in receiver.accepted}) == 1
    finally:
        await h.stop()
        proxy.stop()
        await receiver.stop()


@pytest.mark.slow
def test_victoria_metrics_holds_the_expected_samples_after_ambiguous_successes(start_agent, tmp_path) -> None:
    control = start_victoria_metrics(tmp_path)
    target = start_victoria_metrics(tmp_path, dedup=False)
    proxy = FaultProxy(target.port).start()
    try:
        agent = start_agent(OFFICE_YAML + f"""\
agent: {{state_dir: {tmp_path / "state"}}}
modules:
  host_fast: {{kind: host, timeout: 900ms}}
checks:
  - {{name: host, module: host_fast, service: host, targets: [localhost], interval: 1s}}
remote_write:
  - {{name: control, url: "{control.write_url}", queue: {{batch_send_deadline: 1s, max_backoff: 2s}}}}
  - {{name: cut, url: "{proxy.url}/api/v1/write", remote_timeout: 2s,
     queue: {{batch_send_deadline: 1s, max_backoff: 2s}}}}
""")
        wait_for(lambda: _metric(agent, "egov_agent_remote_write_samples_sent_total", "cut") > 0, timeout=20)
        for _ in range(2):
            proxy.set_mode("drop_response")
            time.sleep(6)
            proxy.set_mode("pass")
            time.sleep(3)
        wait_for(lambda: _metric(agent, "egov_agent_remote_write_queue_samples", "cut") == 0
                 and _metric(agent, "egov_agent_remote_write_queue_samples", "control") == 0, timeout=60, interval=0.5)
        assert proxy.dropped_responses >= 4
        assert _metric(agent, "egov_agent_remote_write_retries_total", "cut", code="network") >= 4
        final_stop = time.time()
        assert agent.stop() == 0
        assert "refused a batch" not in agent.log() and "Traceback" not in agent.log()
        time.sleep(2)
        cutoff = int((final_stop - 3) * 1000)  # the last samples may still sit in one queue (sent on next start)
        expected = _before(control.samples(SELECTOR), cutoff)
        stored = wait_for(lambda: _settled(target.raw_samples, SELECTOR), timeout=30)
        raw = {key: [(t, v) for t, v in rows if t < cutoff] for key, rows in stored.items()}  # type: ignore[union-attr]
        raw = {key: rows for key, rows in raw.items() if rows}
        assert expected and set(raw) == set(expected)
        duplicates = 0
        for key, rows in raw.items():
            values: dict[int, set[float]] = {}
            for ts, value in rows:
                values.setdefault(ts, set()).add(value)
            conflicting = {ts: v for ts, v in values.items() if len(v) > 1}
            assert not conflicting, f"{dict(key)['__name__']}: different values for one timestamp {conflicting}"
            assert {ts: v.pop() for ts, v in values.items()} == expected[key], dict(key)
            duplicates += len(rows) - len(values)
        assert duplicates > 0, "no request was stored twice: the test did not make an ambiguous success"
    finally:
        proxy.stop()
        control.stop()
        target.stop()


def _metric(agent, name: str, destination: str, **labels: str) -> float:
    for family in text_string_to_metric_families(agent.metrics()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("destination") == destination and all(
                    sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _before(samples: Samples, cutoff: int) -> Samples:
    kept = {key: {t: v for t, v in rows.items() if t < cutoff} for key, rows in samples.items()}
    return {key: rows for key, rows in kept.items() if rows}


def _settled(read, selector: str) -> RawSamples | None:
    first = read(selector)
    time.sleep(1.5)
    second = read(selector)
    return second if first == second and second else None
