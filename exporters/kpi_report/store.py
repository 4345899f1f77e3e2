"""A small client for the Prometheus HTTP query API (Prometheus and VictoriaMetrics alike): bounded and timed."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

from agent.errors import AgentError

MAX_BODY = 256 * 1024 * 1024
T = TypeVar("T")
Labels = dict[str, str]


class StoreError(AgentError):
    """The central store cannot be reached, or refused or failed a query."""


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """Run awaitables together; on the first failure cancel the rest and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(aw)) for aw in aws]
    except BaseExceptionGroup as group_error:
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


class Store:
    """Query API client: at most `concurrency` requests in flight, each limited to `timeout` seconds."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, concurrency: int = 4) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise StoreError(f"--source must be an http:// or https:// URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.queries = 0
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        self._session: Any = None

    async def __aenter__(self) -> Store:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._session.close()

    async def instant(self, query: str, at: float) -> list[tuple[Labels, float]]:
        """An instant query at Unix time `at`: (labels, value) per series; NaN and infinite values are dropped."""
        data = await self._call("/api/v1/query", {"query": query, "time": f"{at:.3f}"})
        if data.get("resultType") == "scalar":
            value = _number(data.get("result", [0, "NaN"])[1])
            return [] if value is None else [({}, value)]
        out = []
        for item in _result_list(data, "vector"):
            value = _number(item.get("value", [0, "NaN"])[1])
            if value is not None:
                out.append((dict(item.get("metric", {})), value))
        return out

    async def range(self, query: str, start: float, end: float,
                    step: float) -> list[tuple[Labels, list[tuple[float, float]]]]:
        """A range query: (labels, [(time, value), ...]) per series."""
        data = await self._call("/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                        "step": f"{step:g}",
                                                        # VictoriaMetrics would round start down to a multiple of step
                                                        "nocache": "1"})
        out = []
        for item in _result_list(data, "matrix"):
            points = []
            for stamp, raw in item.get("values", []):
                value = _number(raw)
                if value is not None:
                    points.append((float(stamp), value))
            out.append((dict(item.get("metric", {})), points))
        return out

    async def _call(self, path: str, form: dict[str, str]) -> dict[str, Any]:
        import aiohttp

        url = self.base_url + path
        async with self._semaphore:
            try:
                async with self._session.post(url, data=form) as response:
                    status = response.status
                    parts, size = [], 0
                    async for chunk in response.content.iter_chunked(1 << 20):
                        parts.append(chunk)
                        size += len(chunk)
                        if size > MAX_BODY:
                            break
                    body = b"".join(parts)
            except TimeoutError:
                raise StoreError(f"{url}: no answer within {self.timeout:g}s for {_short(form['query'])}") from None
            except aiohttp.ClientError as err:
                raise StoreError(f"cannot reach the store at {self.base_url}: {err}") from None
        self.queries += 1
        if len(body) > MAX_BODY:
            raise StoreError(f"{url}: answer larger than {MAX_BODY // (1024 * 1024)} MiB for {_short(form['query'])}")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise StoreError(f"{url}: HTTP {status}, not a Prometheus API answer: {body[:200]!r}") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error", "") if isinstance(payload, dict) else ""
            raise StoreError(f"{url}: HTTP {status}: {error or 'query failed'} (query: {_short(form['query'])})")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise StoreError(f"{url}: answer without data (query: {_short(form['query'])})")
        return data


def _result_list(data: dict[str, Any], expected: str) -> list[dict[str, Any]]:
    if data.get("resultType") != expected:
        raise StoreError(f"expected a {expected} result, got {data.get('resultType')!r}: the query must return "
                         f"{'an instant vector' if expected == 'vector' else 'series'}")
    result = data.get("result")
    return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _short(query: str) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= 160 else flat[:157] + "..."


async def _as_coroutine(aw: Awaitable[T]) -> T:
    return await aw
