"""Fixtures of the remote-write tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fakes.rw_harness import Harness
from fakes.rw_receiver import FakeReceiver


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await make(receiver, **remote_write_config)` gives a started Harness, stopped at teardown."""
    made: list[Harness] = []

    async def build(receiver: FakeReceiver, **config: Any) -> Harness:
        harness = Harness(tmp_path / str(len(made)), receiver, **config)
        made.append(harness)
        await harness.start()
        return harness

    yield build
    for harness in made:
        await harness.stop()
