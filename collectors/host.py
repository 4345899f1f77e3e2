"""Host metrics via psutil, with node_exporter's names and meaning."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal, get_args

import psutil
from pydantic import AfterValidator, Field

from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

# node_exporter's upstream defaults (Debian's package patches its own in; we keep upstream's).
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs"
    r"|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
Subsystem = Literal["cpu", "loadavg", "meminfo", "filesystem", "netdev", "stat"]
SUBSYSTEMS: tuple[Subsystem, ...] = get_args(Subsystem)


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"invalid regular expression: {err}") from None
    return value


Regex = Annotated[str, AfterValidator(_valid_regex)]


class HostSettings(Settings):
    """Which host subsystems to report, and node_exporter's exclusion filters."""

    collectors: list[Subsystem] = Field(default_factory=lambda: list(SUBSYSTEMS))
    mount_points_exclude: Regex = DEFAULT_MOUNT_POINTS_EXCLUDE
    fs_types_exclude: Regex = DEFAULT_FS_TYPES_EXCLUDE
    netdev_device_exclude: Regex = ""


_FS_LABELS = ("device", "fstype", "mountpoint")
_MEMINFO_FIELDS = ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree")
_NETDEV_FIELDS = (
    ("receive_bytes", "bytes_recv"),
    ("transmit_bytes", "bytes_sent"),
    ("receive_packets", "packets_recv"),
    ("transmit_packets", "packets_sent"),
    ("receive_errs", "errin"),
    ("transmit_errs", "errout"),
    ("receive_drop", "dropin"),
    ("transmit_drop", "dropout"),
)
_FS_FIELDS = (
    ("size_bytes", "Filesystem size in bytes."),
    ("avail_bytes", "Filesystem space available to non-root users in bytes."),
    ("free_bytes", "Filesystem free space in bytes."),
    ("files", "Filesystem total file nodes."),
    ("files_free", "Filesystem total free file nodes."),
    ("readonly", "Filesystem read-only status."),
)

METRICS = (
    MetricSpec("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", ("cpu", "mode")),
    MetricSpec("node_load1", "gauge", "1m load average."),
    MetricSpec("node_load5", "gauge", "5m load average."),
    MetricSpec("node_load15", "gauge", "15m load average."),
    *(MetricSpec(f"node_memory_{f}_bytes", "gauge", f"Memory information field {f}_bytes.") for f in _MEMINFO_FIELDS),
    *(MetricSpec(f"node_filesystem_{name}", "gauge", text, _FS_LABELS) for name, text in _FS_FIELDS),
    *(
        MetricSpec(f"node_network_{name}_total", "counter", f"Network device statistic {name}.", ("device",))
        for name, _ in _NETDEV_FIELDS
    ),
    MetricSpec("node_boot_time_seconds", "gauge", "Node boot time, in unixtime."),
)

_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_statvfs_in_progress: set[str] = set()
_statvfs_lock = threading.Lock()
_Row = tuple[str, float, tuple[str, ...]]


async def probe_host(ctx: ProbeContext, settings: HostSettings) -> bool:
    """Read the host's counters in a worker thread and record them; a failing part is skipped and counted."""
    rows, errors = await asyncio.to_thread(_collect, settings)
    for name, value, labels in rows:
        ctx.sink.add(name, value, *labels)
    for subsystem, message in errors:
        ctx.count_partial_error(subsystem)
        ctx.log("%s: %s", subsystem, message, level="warn")
    return True


SPEC = CollectorSpec(
    kind="host",
    settings=HostSettings,
    probe=probe_host,
    metrics=METRICS,
    builtin_modules={"host": {"kind": "host", "timeout": "5s"}},
)


def _collect(settings: HostSettings) -> tuple[list[_Row], list[tuple[str, str]]]:
    rows: list[_Row] = []
    errors: list[tuple[str, str]] = []
    readers: dict[str, Callable[[HostSettings, list[str]], Iterator[_Row]]] = {
        "cpu": _cpu,
        "loadavg": _loadavg,
        "meminfo": _meminfo,
        "filesystem": _filesystems,
        "netdev": _netdev,
        "stat": _boot_time,
    }
    for subsystem in settings.collectors:
        problems: list[str] = []
        try:
            rows.extend(readers[subsystem](settings, problems))
        except (OSError, RuntimeError, ValueError) as err:
            # psutil raises OSError subclasses (and RuntimeError on some platforms) when /proc is odd.
            problems.append(f"{type(err).__name__}: {err}")
        errors.extend((subsystem, problem) for problem in problems)
    return rows, errors


def _cpu(_: HostSettings, __: list[str]) -> Iterator[_Row]:
    for index, times in enumerate(psutil.cpu_times(percpu=True)):
        cpu = str(index)
        for mode in _CPU_MODES:
            value = getattr(times, mode, None)
            if value is not None:
                yield ("node_cpu_seconds_total", value, (cpu, mode))


def _loadavg(_: HostSettings, __: list[str]) -> Iterator[_Row]:
    load1, load5, load15 = os.getloadavg()
    yield ("node_load1", load1, ())
    yield ("node_load5", load5, ())
    yield ("node_load15", load15, ())


def _meminfo(_: HostSettings, __: list[str]) -> Iterator[_Row]:
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    values = {
        "MemTotal": vm.total,
        "MemAvailable": vm.available,
        "MemFree": vm.free,
        "Buffers": getattr(vm, "buffers", None),
        "Cached": _linux_cached_bytes(getattr(vm, "cached", None)),
        "SwapTotal": swap.total,
        "SwapFree": swap.free,
    }
    for field_name in _MEMINFO_FIELDS:
        value = values[field_name]
        if value is not None:
            yield (f"node_memory_{field_name}_bytes", float(value), ())


def _linux_cached_bytes(psutil_cached: int | None) -> int | None:
    """/proc/meminfo's Cached: psutil folds SReclaimable into `cached`, node_exporter does not."""
    try:
        with Path("/proc/meminfo").open("rb") as meminfo:
            for line in meminfo:
                if line.startswith(b"Cached:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return psutil_cached


def _filesystems(settings: HostSettings, problems: list[str]) -> Iterator[_Row]:
    exclude_mount = re.compile(settings.mount_points_exclude)
    exclude_type = re.compile(settings.fs_types_exclude)
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=True):
        mountpoint = part.mountpoint
        if mountpoint in seen or exclude_mount.search(mountpoint) or exclude_type.search(part.fstype):
            continue
        seen.add(mountpoint)
        with _statvfs_lock:
            if mountpoint in _statvfs_in_progress:
                problems.append(f"{mountpoint}: an earlier statfs is still hanging; skipped")
                continue
            _statvfs_in_progress.add(mountpoint)
        try:
            st = os.statvfs(mountpoint)
        except OSError as err:
            problems.append(f"{mountpoint}: {err.strerror or err}")
            continue
        finally:
            with _statvfs_lock:
                _statvfs_in_progress.discard(mountpoint)
        # psutil reports the device "none" as ""; node_exporter keeps "none".
        labels = (part.device or "none", part.fstype, mountpoint)
        readonly = 1.0 if "ro" in part.opts.split(",") else 0.0
        yield ("node_filesystem_size_bytes", float(st.f_blocks * st.f_frsize), labels)
        yield ("node_filesystem_avail_bytes", float(st.f_bavail * st.f_frsize), labels)
        yield ("node_filesystem_free_bytes", float(st.f_bfree * st.f_frsize), labels)
        yield ("node_filesystem_files", float(st.f_files), labels)
        yield ("node_filesystem_files_free", float(st.f_ffree), labels)
        yield ("node_filesystem_readonly", readonly, labels)


def _netdev(settings: HostSettings, _: list[str]) -> Iterator[_Row]:
    exclude = re.compile(settings.netdev_device_exclude) if settings.netdev_device_exclude else None
    for device, counters in sorted(psutil.net_io_counters(pernic=True, nowrap=False).items()):
        if exclude is not None and exclude.search(device):
            continue
        for name, attr in _NETDEV_FIELDS:
            yield (f"node_network_{name}_total", float(getattr(counters, attr)), (device,))


def _boot_time(_: HostSettings, __: list[str]) -> Iterator[_Row]:
    yield ("node_boot_time_seconds", psutil.boot_time(), ())
