"""The agent as a process pushing to real receivers through a fault proxy: outages, restarts, flapping.

Two destinations get the same samples: `control` writes straight to its own VictoriaMetrics, `cut` goes through
the proxy that breaks the link. After the link returns, `cut`'s receiver must hold exactly what `control` holds
(every sample the agent took), and `control` must have a sample every interval except while the agent was down.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.fault_proxy import FaultProxy
from fakes.receivers import Receiver, Samples, start_prometheus, start_victoria_metrics
from prometheus_client.parser import text_string_to_metric_families
from testlib import OFFICE_YAML, wait_for

pytestmark = pytest.mark.slow
SELECTOR = '{org_id="000.00.20.H49"}'


def config(state: Path, control: str, cut: str) -> str:
    return OFFICE_YAML + f"""\
agent: {{state_dir: {state}}}
modules:
  host_fast: {{kind: host, timeout: 900ms}}
checks:
  - {{name: host, module: host_fast, service: host, targets: [localhost], interval: 1s}}
remote_write:
  - {{name: control, url: "{control}", queue: {{batch_send_deadline: 1s, max_backoff: 2s}}}}
  - {{name: cut, url: "{cut}", remote_timeout: 2s, queue: {{batch_send_deadline: 1s, max_backoff: 4s}}}}
"""


def metric(agent, name: str, destination: str, **labels: str) -> float:
    for family in text_string_to_metric_families(agent.metrics()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("destination") == destination and all(
                    sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
def receivers(tmp_path: Path, request) -> Iterator[tuple[Receiver, Receiver, FaultProxy]]:
    control = start_victoria_metrics(tmp_path)
    target = start_prometheus(tmp_path) if request.param == "prometheus" else start_victoria_metrics(tmp_path)
    proxy = FaultProxy(target.port).start()
    yield control, target, proxy
    proxy.stop()
    control.stop()
    target.stop()


def wait_drained(agent, timeout: float = 90) -> None:
    wait_for(lambda: metric(agent, "egov_agent_remote_write_queue_samples", "cut") == 0
             and metric(agent, "egov_agent_remote_write_queue_samples", "control") == 0, timeout=timeout, interval=0.5)


def assert_same(control: Samples, cut: Samples, kind: str, before: float) -> None:
    # Samples of the last moments before the final stop may still sit in one queue or the other (not lost: the
    # next start sends them), so both sides are compared up to shortly before it.
    cutoff = int((before - 3) * 1000)
    control = {k: {t: v for t, v in s.items() if t < cutoff} for k, s in control.items()}
    cut = {k: {t: v for t, v in s.items() if t < cutoff} for k, s in cut.items()}
    control = {k: s for k, s in control.items() if s}
    cut = {k: s for k, s in cut.items() if s}
    assert control, "the control receiver got nothing"
    assert set(cut) == set(control), f"series differ: {set(control) ^ set(cut)}"
    for key, expected in control.items():
        got = cut[key]
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{kind} lacks {len(missing)} samples of {dict(key)['__name__']}, first {missing[:3]}"
        assert set(got) == set(expected)
        for ts, value in expected.items():
            assert math.isclose(got[ts], value, rel_tol=1e-9, abs_tol=1e-12), (dict(key), ts, got[ts], value)


def gaps(samples: Samples, name: str) -> list[float]:
    series = [s for k, s in samples.items() if dict(k)["__name__"] == name]
    assert len(series) == 1
    stamps = sorted(series[0])
    return [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]


@pytest.mark.parametrize("receivers", ["victoria-metrics", "prometheus"], indirect=True)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_outage_with_a_restart_during_the_cut_loses_nothing(start_agent, tmp_path, receivers, stop_signal) -> None:
    control, target, proxy = receivers
    text = config(tmp_path / "state", control.write_url, f"{proxy.url}/api/v1/write")
    agent = start_agent(text)
    wait_for(lambda: metric(agent, "egov_agent_remote_write_samples_sent_total", "cut") > 0, timeout=20)
    # The cut: requests hang, then the agent restarts, then connections are refused, then reset.
    proxy.set_mode("blackhole")
    time.sleep(8)
    assert metric(agent, "egov_agent_remote_write_queue_oldest_sample_age_seconds", "cut") > 3
    stopped = time.monotonic()
    code = agent.stop(stop_signal)
    if stop_signal == signal.SIGTERM:
        assert code == 0 and time.monotonic() - stopped < 10, agent.log()
    downtime_started = time.time()
    agent = start_agent(text)
    downtime = time.time() - downtime_started
    proxy.set_mode("refuse")
    time.sleep(8)
    proxy.set_mode("reset")
    time.sleep(8)
    assert metric(agent, "egov_agent_remote_write_queue_samples", "cut") > 1000
    assert metric(agent, "egov_agent_remote_write_retries_total", "cut", code="network") > 0
    proxy.set_mode("pass")
    wait_drained(agent)
    final_stop = time.time()
    assert agent.stop() == 0
    assert metric_free_of_failures(agent)
    time.sleep(2)
    expected = control.samples(SELECTOR)
    got = wait_for(lambda: _settled(target), timeout=30)
    assert_same(expected, got, target.kind, final_stop)  # type: ignore[arg-type]
    intervals = gaps(expected, "probe_success")
    # One sample a second except across the restart, which took about `downtime` seconds.
    assert sum(1 for g in intervals if g > 2.5) <= 1, intervals
    assert max(intervals) < downtime + 5
    assert "Traceback" not in agent.log()


def _settled(receiver: Receiver) -> Samples | None:
    first = receiver.samples(SELECTOR)
    time.sleep(1.5)
    second = receiver.samples(SELECTOR)
    return second if first == second and second else None


def metric_free_of_failures(agent) -> bool:
    log = agent.log()
    return "refused a batch" not in log and "sender crashed" not in log


@pytest.mark.parametrize("receivers", ["victoria-metrics"], indirect=True)
def test_flapping_link_loses_nothing(start_agent, tmp_path, receivers) -> None:
    control, target, proxy = receivers
    agent = start_agent(config(tmp_path / "state", control.write_url, f"{proxy.url}/api/v1/write"))
    proxy.flap(seed=11, up=(0.5, 3.0), down=(0.5, 4.0))
    time.sleep(40)
    proxy.set_mode("pass")
    wait_drained(agent)
    assert metric(agent, "egov_agent_remote_write_retries_total", "cut", code="network") > 0
    final_stop = time.time()
    assert agent.stop() == 0
    expected = control.samples(SELECTOR)
    got = wait_for(lambda: _settled(target), timeout=30)
    assert_same(expected, got, target.kind, final_stop)  # type: ignore[arg-type]
    assert max(gaps(expected, "probe_success")) < 2.5
