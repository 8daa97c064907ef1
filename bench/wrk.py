"""Running wrk (Debian's package) with bench/lua/events.lua and reading its summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass

from tests.support.pipeline import REPO

SCRIPT = REPO / "bench" / "lua" / "events.lua"


@dataclass(frozen=True)
class WrkResult:
    requests: int  # answered 2xx/3xx
    failed: int  # non-2xx answers, connect/read/write errors, timeouts
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, float]:
        return {"rps": round(self.rps, 1), "requests": self.requests, "failed": self.failed,
                "seconds": round(self.seconds, 2), "p50_ms": self.p50_ms, "p90_ms": self.p90_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms}


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    return path


def run_wrk(url: str, *, key: str, events_per_request: int, seconds: float, connections: int,
            rate: float = 0.0, run: str = "run", threads: int = 1) -> WrkResult:
    """wrk against `url` (POST /v1/events); `rate` > 0 paces the requests (total req/s)."""
    command = [
        wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(SCRIPT), url, "--", key, str(events_per_request), f"{rate:g}", str(threads), run,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    summary = json.loads(line.removeprefix("BENCH_JSON "))
    failed = sum(summary[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_status",
                                      "errors_timeout"))
    return WrkResult(
        requests=summary["requests"] - summary["errors_status"],
        failed=failed,
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["latency_p50_us"] / 1000,
        p90_ms=summary["latency_p90_us"] / 1000,
        p99_ms=summary["latency_p99_us"] / 1000,
        max_ms=summary["latency_max_us"] / 1000,
    )
