"""The machine a benchmark ran on, and where its CPU time went (from /proc, Linux only)."""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def source_digest(repo: Path) -> str:
    """SHA-256 over the product's sources (services, shared, schemas, pyproject.toml): which code was measured,
    and whether someone changed it while the bench ran (the services import it when they start)."""
    digest = hashlib.sha256()
    files = [repo / "pyproject.toml", *sorted(repo.glob("services/**/*.py")), *sorted(repo.glob("shared/**/*.py")),
             *sorted(repo.glob("schemas/*.avsc"))]
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, total, steal) ticks of all cores since boot; steal: time the hypervisor ran someone else."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total, fields[7]


def _process_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks used so far) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])  # ppid, utime + stime


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _own_children_ticks() -> int:
    """CPU ticks of this process's children that have exited and been waited for (wrk, load generators)."""
    stat = Path("/proc/self/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[13]) + int(fields[14])  # cutime + cstime


@dataclass
class CpuSnapshot:
    at: float
    busy: int
    total: int
    steal: int
    per_pid: dict[int, tuple[int, int]]  # pid -> (ppid, ticks)
    exited_children: int


OTHERS = "not the bench (other processes)"
EXITED = "wrk / load generator (finished during the window)"


class CpuMeter:
    """CPU used per group of processes between two snapshots, in cores (1.0 = one core busy).

    A process belongs to the group of its nearest labelled ancestor (a service, the broker, the
    PostgreSQL postmaster, which runs detached); other descendants of the bench count by their name
    (wrk, py-spy); everything else on the machine is reported as OTHERS, so a run disturbed by another
    workload says so.
    """

    def __init__(self) -> None:
        self.labels: dict[int, str] = {os.getpid(): "bench (driver, audit watcher)"}

    def label(self, pid: int, name: str) -> None:
        self.labels[pid] = name

    def snapshot(self) -> CpuSnapshot:
        busy, total, steal = _machine_ticks()
        per_pid = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _process_stat(int(entry))
                if stat is not None:
                    per_pid[int(entry)] = stat
        return CpuSnapshot(time.monotonic(), busy, total, steal, per_pid, _own_children_ticks())

    def _group(self, pid: int, parents: Mapping[int, int]) -> str:
        seen = pid
        for _ in range(64):
            if seen in self.labels:
                return self.labels[seen] if seen != os.getpid() or pid == seen else _comm(pid)
            seen = parents.get(seen, 0)
            if seen <= 1:
                return OTHERS
        return OTHERS

    def usage(self, before: CpuSnapshot, after: CpuSnapshot) -> dict[str, object]:
        """Machine busy fraction and the cores each group of processes used."""
        seconds = max(after.at - before.at, 1e-9)
        parents = {pid: ppid for pid, (ppid, _) in after.per_pid.items()}
        by_group: dict[str, float] = defaultdict(float)
        for pid, (_, ticks) in after.per_pid.items():
            used = ticks - before.per_pid.get(pid, (0, 0))[1]
            if used > 0:
                by_group[self._group(pid, parents)] += used / TICKS_PER_SECOND / seconds
        exited = after.exited_children - before.exited_children
        by_group[EXITED] += exited / TICKS_PER_SECOND / seconds
        total = after.total - before.total
        return {
            "machine_busy": round((after.busy - before.busy) / total, 3) if total else 0.0,
            "steal": round((after.steal - before.steal) / total, 3) if total else 0.0,
            "cores_by_process": {name: round(value, 2) for name, value in
                                 sorted(by_group.items(), key=lambda kv: -kv[1]) if value >= 0.01},
        }


def background_cores(meter: CpuMeter, seconds: float = 3.0) -> float:
    """Cores used by processes that are not the bench's, over `seconds`."""
    before = meter.snapshot()
    time.sleep(seconds)
    cores = meter.usage(before, meter.snapshot())["cores_by_process"]
    assert isinstance(cores, dict)
    return float(cores.get(OTHERS, 0.0))


def wait_until_quiet(meter: CpuMeter, max_wait: float, threshold: float, log: Callable[[str], None]) -> float:
    """Wait (at most `max_wait` s) until other processes use under `threshold` cores; return what they use."""
    deadline = time.monotonic() + max_wait
    while True:
        cores = background_cores(meter)
        if cores < threshold or time.monotonic() >= deadline:
            if cores >= threshold:
                log(f"machine still busy with other work ({cores:.2f} cores); measuring anyway, see the cpu details")
            return cores
        log(f"other processes use {cores:.2f} cores; waiting for a quieter machine")
        time.sleep(5)


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """Thread id -> (thread name as the kernel knows it, CPU ticks used so far), for one process."""
    threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for entry in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        threads[int(entry)] = (name, int(fields[11]) + int(fields[12]))
    return threads


def cores_by_thread(pid: int, before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
                    seconds: float) -> dict[str, float]:
    """Cores each kind of thread used: the main thread, librdkafka's threads (rdk:*) by name, and the
    process's other threads (Python threads started by the service, e.g. the producer's poll thread)."""
    by_kind: dict[str, float] = defaultdict(float)
    for tid, (name, ticks) in after.items():
        used = ticks - before.get(tid, (name, 0))[1]
        if used <= 0:
            continue
        if tid == pid:
            kind = "main thread"
        elif name.startswith("rdk:"):
            kind = "librdkafka " + name.rstrip("0123456789")
        else:
            kind = "other threads"
        by_kind[kind] += used / TICKS_PER_SECOND / seconds
    return {kind: round(value, 3) for kind, value in sorted(by_kind.items(), key=lambda kv: -kv[1])
            if value >= 0.005}
