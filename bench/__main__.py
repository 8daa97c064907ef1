"""`python -m bench` (what `make bench` runs): every benchmark, a table, and bench/results.json.

Options: `--only skan,gateway,e2e,forward,audit,report,dashboard` runs a subset; `--no-profile` skips the py-spy
windows; `--quick` shortens every window (for trying the harness, not for numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.audit_bench import QUICK as AUDIT_QUICK
from bench.audit_bench import AuditDurations, run_audit_bench
from bench.dashboard_bench import QUICK as DASHBOARD_QUICK
from bench.dashboard_bench import DashboardDurations, run_dashboard_bench
from bench.e2e_bench import E2EDurations, run_e2e_bench
from bench.forward_bench import ForwardDurations, run_forward_bench
from bench.gateway_bench import GatewayDurations, run_gateway_bench
from bench.infra import OUT, TRY_PREFIX, postgres_server, postmaster_pid
from bench.machine import OTHERS, CpuMeter, machine_info, source_digest, wait_until_quiet
from bench.report_bench import QUICK as REPORT_QUICK
from bench.report_bench import ReportDurations, run_report_bench
from tests.support.pipeline import REPO

RESULTS = REPO / "bench" / "results.json"
QUIET_CORES = 0.25  # other processes' CPU below which the machine counts as quiet
# (key, target, higher is better); None: reported, no target of its own.
TARGETS: tuple[tuple[str, float | None, bool], ...] = (
    ("gateway_bare_rps", None, True),
    ("gateway_single_rps", None, True),
    ("gateway_single_ratio", 0.6, True),
    ("gateway_single_p99_ms", 25.0, False),
    ("gateway_batch_events_per_s", 100_000, True),
    ("e2e_events_per_s", 10_000, True),
    ("e2e_p99_s", 2.0, False),
    ("skan_verify_decode_per_s", 10_000, True),
    ("consumers_scale_2_over_1", 1.7, True),
    ("forward_latency_ratio", 0.8, True),
    ("forward_isolation_p99_s", 2.0, False),
    ("audit_us_per_row", None, False),
    ("audit_events_cost_ratio", None, False),
    ("report_p95_ms", 200.0, False),
    ("report_30d_p95_ms", None, False),
    ("report_90d_p95_ms", None, False),
    ("report_raw_p95_ms", None, False),
    ("report_raw_over_rolled", None, True),
    ("report_rollup_s", None, False),
    ("dashboard_p95_ms", 300.0, False),
)


def skan(log: Callable[[str], None], seconds: float) -> dict[str, Any]:
    log("skan: verify + decode on one core")
    done = subprocess.run([sys.executable, "-m", "bench.skan_bench", "--seconds", str(seconds)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    details: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"  {details['signed']['per_s']:,} postbacks/s on core {details['cpu']} ({details['source']})")
    return {"skan_verify_decode_per_s": details["signed"]["per_s"], "details": details}


def verdict(key: str, value: float, results: dict[str, Any]) -> str:
    target = next(((t, higher) for k, t, higher in TARGETS if k == key and t is not None), None)
    if target is None:
        return ""
    threshold, higher = target
    met = value >= threshold if higher else value <= threshold
    note = ""
    if key == "consumers_scale_2_over_1" and not met and results["details"].get("e2e", {}).get("machine_limited"):
        needed = results["details"]["e2e"]["cores_needed_for_target_scale"]
        note = f" (machine-limited: 1.7x the one-process run needs {needed:g} of {os.cpu_count()} cores)"
    if key == "forward_isolation_p99_s" and not met:
        healthy = results["details"]["forward"]["at_100ms"]
        if healthy["latency_to_fake_s"].get("p99", 0.0) > threshold:
            ceiling = healthy["forwarder"]["metrics"].get("forward_rate_limit_rps", float("nan"))
            note = (f" (without the hang the p99 was already {healthy['latency_to_fake_s']['p99']:g} s, at "
                    f"{healthy['fake_requests_per_s']:g} requests/s against a ceiling of {ceiling:g})")
    return ("met" if met else "MISSED") + note


def table(results: dict[str, Any]) -> str:
    rows = [("metric", "value", "target", "")]
    for key, target, higher in TARGETS:
        if key not in results:
            continue
        value = results[key]
        shown = f"{value:,.3f}" if isinstance(value, float) and value < 10 else f"{value:,}"
        wanted = "" if target is None else f"{'>=' if higher else '<='} {target:,g}"
        rows.append((key, shown, wanted, verdict(key, value, results)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def background_during(details: dict[str, Any]) -> dict[str, float]:
    """Cores other processes used during each measured window (from the `cpu` entries of the details)."""
    found: dict[str, float] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "cores_by_process" in node:
                found[path] = float(node["cores_by_process"].get(OTHERS, 0.0))
                return
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)

    walk(details, "")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default="skan,gateway,e2e,forward,audit,report,dashboard")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="seconds to wait, before each benchmark, for other processes to calm down")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    profile = not args.no_profile
    started = time.monotonic()
    code_at_start = source_digest(REPO)
    shutil.rmtree(OUT, ignore_errors=True)  # logs and profiles of the previous run
    OUT.mkdir(parents=True)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    log(f"measuring the sources with digest {code_at_start} on {machine_info()['nproc']} cores")

    gateway_durations, e2e_durations, forward_durations = GatewayDurations(), E2EDurations(), ForwardDurations()
    report_durations, dashboard_durations, audit_durations = ReportDurations(), DashboardDurations(), AuditDurations()
    if args.quick:
        gateway_durations = GatewayDurations(measure=3, warmup=1, half_load=3, batch=3, profile=3)
        e2e_durations = E2EDurations(warmup=3, probe=8, skip=2, steady_measured=8, profile=3, drain_timeout=30)
        forward_durations = ForwardDurations(warmup=3, skip=2, measured=8, isolation=12, drain_timeout=30)
        report_durations, dashboard_durations, audit_durations = REPORT_QUICK, DASHBOARD_QUICK, AUDIT_QUICK

    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    background: dict[str, float] = {}  # cores other processes used just before each benchmark
    meter = CpuMeter()
    if "skan" in chosen:
        background["skan"] = wait_until_quiet(meter, args.quiet_wait, QUIET_CORES, log)
        skan_results = skan(log, 2.0 if args.quick else 4.0)
        details["skan"] = skan_results.pop("details")
        results.update(skan_results)
    if chosen & {"gateway", "e2e", "forward", "audit", "report", "dashboard"}:
        with postgres_server() as pg:
            meter.label(postmaster_pid(pg), "postgres")
            parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("gateway", lambda: run_gateway_bench(pg.url, meter, gateway_durations, profile, log)),
                ("e2e", lambda: run_e2e_bench(pg.url, meter, e2e_durations, profile, log)),
                ("forward", lambda: run_forward_bench(pg.url, meter, forward_durations, log)),
                ("audit", lambda: run_audit_bench(pg.url, meter, audit_durations, log)),
                ("report", lambda: run_report_bench(pg.url, meter, report_durations, log)),
                ("dashboard", lambda: run_dashboard_bench(pg.url, meter, dashboard_durations, log)),
            ]
            for name, run in parts:
                if name in chosen:
                    background[name] = wait_until_quiet(meter, args.quiet_wait, QUIET_CORES, log)
                    part = run()
                    details[name] = part.pop("details")
                    profiles.update(part.pop("profiles"))
                    results.update(part)
    details["background_cores_before"] = background
    details["background_cores_during"] = background_during(details)

    code_at_end = source_digest(REPO)
    report = {
        **results,
        "targets": {key: target for key, target, _ in TARGETS if target is not None},
        "machine": machine_info(),
        "command": "make bench" + (f" ({' '.join(sys.argv[1:])})" if sys.argv[1:] else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runtime_s": round(time.monotonic() - started, 1),
        "source_digest": code_at_start if code_at_start == code_at_end else f"{code_at_start} -> {code_at_end}",
        "service_env_overrides": {k: v for k, v in os.environ.items() if k.startswith(TRY_PREFIX)},
        "details": details,
        "profiles": profiles,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    during = details["background_cores_during"]
    if during and max(during.values()) >= QUIET_CORES:
        print(f"\nNOTE: other processes used up to {max(during.values()):.2f} of {report['machine']['nproc']} cores "
              "during the measurements (details.background_cores_during): the numbers are lower than on an idle "
              "machine")
    if code_at_start != code_at_end:
        print("\nWARNING: the product's sources changed while the bench ran (source_digest "
              f"{code_at_start} -> {code_at_end}): services started after the change ran other code; run again")
    for name, summary in profiles.items():
        top = ", ".join(f"{fn.split(' (')[0]} {pct}%" for fn, pct in summary["top_self_pct"][:6])
        print(f"profile {name}: {top}")
    print(f"\nwritten {RESULTS.relative_to(REPO)} and {OUT.relative_to(REPO)}/profiles; "
          f"{report['runtime_s']:.0f} s in all")


if __name__ == "__main__":
    main()
