"""py-spy profiles of running services, and a plain-text summary of where the samples fall.

`py-spy record --format raw` writes collapsed stacks (`frame;frame;... count`, the leaf last); we add
them up per function (self = the leaf, total = anywhere in the stack) and per component (the library
or apprefer package the leaf belongs to). A flame graph (SVG) is recorded beside it for reading by eye.
Sampling is non-blocking (the process is never paused), 100 samples per second, idle threads left out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.infra import OUT
from tests.support.pipeline import REPO

PROFILES = OUT / "profiles"
RATE = 100
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
COMPONENTS = (
    ("services/gateway/", "apprefer gateway"),
    ("services/attribution/", "apprefer attribution"),
    ("services/fanout/", "apprefer fanout"),
    ("services/forwarders/", "apprefer forwarders"),
    ("services/audit/", "apprefer audit"),
    ("shared/kafka/", "apprefer shared/kafka"),
    ("shared/forwarding/", "apprefer shared/forwarding"),
    ("shared/", "apprefer shared (other)"),
    ("/aiohttp/", "aiohttp"),
    ("/pydantic", "pydantic"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/psycopg", "psycopg"),
    ("/confluent_kafka/", "confluent_kafka"),
    ("/fastavro/", "fastavro"),
    ("/prometheus_client/", "prometheus_client"),
    ("/tenacity/", "tenacity"),
    ("/multidict/", "multidict/yarl"),
    ("/yarl/", "multidict/yarl"),
    ("asyncio/", "asyncio (stdlib)"),
    ("logging/", "logging (stdlib)"),
    ("concurrent/", "threads (stdlib)"),
    ("threading.py", "threads (stdlib)"),
)


def py_spy() -> str | None:
    local = REPO / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    """py-spy sampling one process for `seconds`, starting `delay` seconds from now, in the background.
    Raw stacks always; a flame graph (SVG) too when `flamegraph`."""

    def __init__(self, name: str, pid: int, seconds: int, delay: float = 0.0, flamegraph: bool = True) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (make bench installs it into .venv)")
        PROFILES.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.raw = PROFILES / f"{name}.txt"
        self.svg = PROFILES / f"{name}.svg"
        common = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE),
                  "--nonblocking", "--full-filenames"]
        outputs = [("raw", self.raw)] + ([("flamegraph", self.svg)] if flamegraph else [])
        self._commands = [[*common, "--format", fmt, "--output", str(path)] for fmt, path in outputs]
        self._processes: list[subprocess.Popen[bytes]] = []
        self._starter = threading.Timer(delay, self._start)
        self._starter.start()

    def _start(self) -> None:
        self._processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                           for command in self._commands]

    def wait(self) -> ProfileSummary:
        self._starter.join()
        errors = []
        for process in self._processes:
            _, stderr = process.communicate(timeout=120)
            if process.returncode != 0:
                errors.append(stderr.decode(errors="replace")[-2000:])
        if errors or not self.raw.exists():
            raise RuntimeError(f"py-spy failed for {self.name}: {errors}")
        summary = summarise(self.raw)
        (PROFILES / f"{self.name}.summary.txt").write_text(summary.text())
        return summary


def _component(path: str) -> str:
    for marker, name in COMPONENTS:
        if marker in path:
            return name
    return "other"


def _short(func: str, path: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


@dataclass
class ProfileSummary:
    name: str
    samples: int
    self_time: Counter[str]
    total_time: Counter[str]
    components: Counter[str]

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * count / max(self.samples, 1), 1)) for name, count in counter.most_common(n)]

    def as_dict(self, n: int = 12) -> dict[str, object]:
        return {"samples": self.samples, "top_self_pct": self.top(self.self_time, n),
                "top_total_pct": self.top(self.total_time, n), "components_pct": self.top(self.components, 20)}

    def text(self, n: int = 25) -> str:
        lines = [f"{self.name}: {self.samples} samples at {RATE} Hz (non-idle threads)", "", "by component (leaf):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in self.top(self.components, 20)]
        lines += ["", "self time (leaf function):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in self.top(self.self_time, n)]
        lines += ["", "total time (anywhere on the stack):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in self.top(self.total_time, n)]
        return "\n".join(lines) + "\n"


def summarise(raw: Path) -> ProfileSummary:
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    components: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        names = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match is None:
                continue  # a thread or process name
            names.append((_short(match["func"], match["file"]), match["file"]))
        if not names:
            continue
        leaf, leaf_file = names[-1]
        self_time[leaf] += count
        components[_component(leaf_file)] += count
        for name in {n for n, _ in names}:
            total_time[name] += count
    return ProfileSummary(raw.stem, samples, self_time, total_time, components)
