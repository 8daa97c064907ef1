"""py-spy profiles of running services, and a plain-text summary of where the samples fall.

`py-spy record --threads --format raw` writes collapsed stacks (`thread;frame;... count`, the leaf last).
The summary keeps the main thread (the gateway's event loop, a consumer's loop) and adds its samples up
per function (self = the leaf, total = anywhere on the stack) and per component (the library or apprefer
package of the leaf); other threads (librdkafka's poll thread, the forwarder's HTTP loop, idle executor
workers) are only counted. A flame graph (SVG) of the main thread is drawn beside it.

Sampling: 100 Hz, idle threads left out, Python frames only: time in a C extension (orjson, fastavro,
pydantic-core, librdkafka, a socket call, the garbage collector) is charged to the Python line that
called it, and a thread blocked in C is not always recognised as idle. `--native` would name those C
frames, but here it pauses the process so long per sample (unwinding pydantic-core) that the gateway
drops from about 2,600 to 400-750 req/s and stalls for seconds: its profiles would describe the
profiler. Without it py-spy costs the gateway about 4 % (2,590 -> 2,490 req/s, measured).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import OUT
from tests.support.pipeline import REPO

PROFILES = OUT / "profiles"
RATE = 100
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# First match wins: (marker in the file path, component).
COMPONENTS = (
    ("services/gateway/", "apprefer gateway"),
    ("services/attribution/", "apprefer attribution"),
    ("services/fanout/", "apprefer fanout"),
    ("services/forwarders/", "apprefer forwarders"),
    ("services/audit/", "apprefer audit"),
    ("shared/kafka/", "apprefer shared/kafka"),
    ("shared/forwarding/", "apprefer shared/forwarding"),
    ("shared/avro", "apprefer shared/avro"),
    ("shared/", "apprefer shared (other)"),
    ("aiohttp", "aiohttp"),
    ("pydantic", "pydantic"),
    ("sqlalchemy", "sqlalchemy"),
    ("psycopg", "psycopg"),
    ("confluent_kafka", "confluent_kafka"),
    ("fastavro", "fastavro"),
    ("prometheus_client", "prometheus_client"),
    ("tenacity", "tenacity"),
    ("multidict", "multidict/yarl"),
    ("yarl", "multidict/yarl"),
    ("asyncio", "asyncio (stdlib)"),
    ("selectors.py", "asyncio (stdlib)"),
    ("logging/", "logging (stdlib)"),
    ("concurrent/", "threads (stdlib)"),
    ("threading.py", "threads (stdlib)"),
)


def py_spy() -> str | None:
    local = REPO / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    """py-spy sampling one process for `seconds`, starting `delay` seconds from now, in the background."""

    def __init__(self, name: str, pid: int, seconds: int, delay: float = 0.0) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (make bench installs it into .venv)")
        PROFILES.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.raw = PROFILES / f"{name}.txt"
        self.svg = PROFILES / f"{name}.svg"
        self.command = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE),
                        "--threads", "--full-filenames", "--format", "raw", "--output", str(self.raw)]
        if os.environ.get("BENCH_PROFILE_IDLE"):  # waiting shows too: where a stage blocks
            self.command.append("--idle")
        self._process: subprocess.Popen[bytes] | None = None
        self._starter = threading.Timer(delay, self._start)
        self._starter.start()

    def _start(self) -> None:
        self._process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self) -> ProfileSummary:
        self._starter.join()
        assert self._process is not None
        _, stderr = self._process.communicate(timeout=120)
        if self._process.returncode != 0 or not self.raw.exists():
            raise RuntimeError(f"py-spy failed for {self.name}: {stderr.decode(errors='replace')[-2000:]}")
        summary = summarise(self.raw)
        (PROFILES / f"{self.name}.summary.txt").write_text(summary.text())
        self.svg.write_text(flame_graph(summary.stacks, f"{self.name} ({summary.samples} samples)"))
        return summary


def _component(path: str) -> str:
    for marker, name in COMPONENTS:
        if marker in path:
            return name
    return "other"


def _short(func: str, path: str) -> str:
    for marker in ("site-packages/", "python3.11/", f"{REPO}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


@dataclass
class ProfileSummary:
    """The main thread's samples (the event loop, or the consumer loop), and how many fell elsewhere."""

    name: str
    samples: int
    self_time: Counter[str]
    total_time: Counter[str]
    components: Counter[str]
    stacks: Counter[tuple[str, ...]] = field(repr=False)
    other_threads: Counter[str] = field(default_factory=Counter)

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * count / max(self.samples, 1), 1)) for name, count in counter.most_common(n)]

    def as_dict(self, n: int = 15) -> dict[str, object]:
        return {"main_thread_samples": self.samples, "other_threads_samples": dict(self.other_threads),
                "components_pct": self.top(self.components, 20), "top_self_pct": self.top(self.self_time, n),
                "top_total_pct": self.top(self.total_time, n)}

    def text(self, n: int = 30) -> str:
        others = ", ".join(f"{name} {count}" for name, count in self.other_threads.most_common()) or "none"
        lines = [f"{self.name}: {self.samples} samples of the main thread at {RATE} Hz (not idle)",
                 f"samples of other threads (not in the percentages): {others}", "",
                 "by component (of the leaf frame):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in self.top(self.components, 25)]
        lines += ["", "self time (leaf frame):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in self.top(self.self_time, n)]
        lines += ["", "total time (anywhere on the stack):"]
        lines += [f"  {pct:5.1f}%  {name}" for name, pct in self.top(self.total_time, n)]
        return "\n".join(lines) + "\n"


def summarise(raw: Path) -> ProfileSummary:
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    components: Counter[str] = Counter()
    stacks: Counter[tuple[str, ...]] = Counter()
    other_threads: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, _, stack = stack.partition(";") if stack.startswith("thread (") else ("", "", stack)
        thread_name = thread.rpartition(": ")[2] or "MainThread"
        if thread_name != "MainThread":
            other_threads[thread_name] += count
            continue
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match is not None:
                frames.append((match["func"], match["file"]))
        if not frames:
            continue
        samples += count
        names = tuple(_short(func, path) for func, path in frames)
        stacks[names] += count
        self_time[names[-1]] += count
        components[_component(frames[-1][1])] += count
        for name in set(names):
            total_time[name] += count
    return ProfileSummary(raw.stem, samples, self_time, total_time, components, stacks, other_threads)


def flame_graph(stacks: Counter[tuple[str, ...]], title: str, width: int = 1600, row: int = 16) -> str:
    """A static flame graph (root at the bottom; hover a box for its name and share)."""
    tree: dict[str, object] = {}
    total = sum(stacks.values())
    for stack, count in stacks.items():
        node = tree
        for frame in stack:
            child = node.setdefault(frame, {"#": 0, "children": {}})
            assert isinstance(child, dict)
            child["#"] += count
            node = child["children"]

    def depth(node: dict[str, object]) -> int:
        return 1 + max((depth(c["children"]) for c in node.values() if isinstance(c, dict)), default=0)

    height = (depth(tree) + 1) * row + 30
    boxes: list[str] = []

    def draw(node: dict[str, object], x: float, level: int) -> None:
        for name, child in sorted(node.items()):
            assert isinstance(child, dict)
            w = width * child["#"] / max(total, 1)
            if w >= 0.5:
                y = height - (level + 1) * row
                hue = 20 + zlib.crc32(name.split(" (")[-1].encode()) % 40  # warm colours, stable per file
                label = html.escape(name if len(name) * 7 < w else name[: max(0, int(w / 7) - 2)] + "..")
                share = f"{100 * child['#'] / max(total, 1):.1f}%"
                boxes.append(f'<g><title>{html.escape(name)} {share}</title><rect x="{x:.1f}" y="{y}" '
                             f'width="{w:.1f}" height="{row - 1}" fill="hsl({hue},90%,60%)"/>'
                             + (f'<text x="{x + 2:.1f}" y="{y + row - 4}">{label}</text>' if w > 30 else "")
                             + "</g>")
                draw(child["children"], x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
            f'font-size="11"><text x="4" y="16" font-size="14">{html.escape(title)}</text>'
            + "".join(boxes) + "</svg>\n")
