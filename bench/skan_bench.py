"""SKAN verify + decode throughput on one core: what the SKAN decoder does per postback, minus I/O.

Per postback: `verify_postback` (Apple's ECDSA signature), the schema in force for its estimated install
time, and `decode` into install and event records. The postbacks are Apple's signed examples shipped in
tests/data/skan (P-192 and P-256 signatures, SKAN 1.0 to 4.0; the bench refuses to run without them). The
guide's simulated postbacks without a signature are measured apart: they skip the signature check.

Beside that headline (`signed`), `signed_by_curve` measures the P-256 examples (SKAN 2.1+, what devices send
today) and the P-192 ones (SKAN 1.0/2.0) apart; `signature_only` the bare signature check per curve (a fresh
key); `overhead` verify + decode against the bare checks of the same examples (keys loaded, messages built and
signatures decoded once: the ceiling for this mix), in alternating windows, and the Python cost between them.

`python -m bench.skan_bench [--seconds N] [--cpu N]` prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256

from services.domain.skan.decode import SIMULATED_TEST_APP_SCHEMAS, decode, estimated_install_time, schema_in_force
from services.skan.verify import APPLE_P192_KEY, APPLE_P256_KEY, signed_message, verify_postback
from tests.support.pipeline import REPO

TESTDATA = REPO / "tests" / "data" / "skan"
SCHEMA = SIMULATED_TEST_APP_SCHEMAS["888707086"]  # conversion bitmask: value 63 -> six event records
# A DER ECDSA signature (SEQUENCE of two INTEGERs) that matches nothing.
# Apple signs these versions with its P-192 key, every later one with its P-256 key (docs/skan.md).
P192_VERSIONS = frozenset({"1.0", "2.0"})


def simulated_postbacks() -> list[dict[str, Any]]:
    """The guide's simulated test apps: values 7, 63 and 3 for apps 888707085, 888707086, 888707087."""
    base = {"version": "3.0", "ad-network-id": "example123.skadnetwork", "campaign-id": 42, "redownload": False,
            "source-app-id": 1234567891, "fidelity-type": 1, "did-win": True}
    return [{**base, "app-id": app_id, "transaction-id": f"6aafb7a5-0170-41b5-bbe4-fe71dedf1e{n:02d}",
             "conversion-value": value}
            for n, (app_id, value) in enumerate(((888707085, 7), (888707086, 63), (888707087, 3)))]


def signed_postbacks() -> tuple[list[dict[str, Any]], str]:
    """Apple's signed examples, shipped in tests/data/skan: without them the figure would measure
    something else, so their absence is an error, not a fallback."""
    files = sorted(TESTDATA.glob("*.json")) if TESTDATA.is_dir() else []
    examples = [json.loads(f.read_text()) for f in files]
    signed = [e["postback"] for e in examples if e.get("expected_valid") is True]
    if not signed:
        raise SystemExit(f"no signed SKAN examples in {TESTDATA}: the repository's test data is missing")
    return signed, f"{len(signed)} signed examples from {TESTDATA.relative_to(REPO)}"


def is_p192(postback: dict[str, Any]) -> bool:
    return verify_postback(postback).version in P192_VERSIONS


def by_curve(postbacks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups = {"p256": [p for p in postbacks if not is_p192(p)], "p192": [p for p in postbacks if is_p192(p)]}
    return {curve: group for curve, group in groups.items() if group}


def verify_and_decode(postback: dict[str, Any], received_at: datetime) -> int:
    verification = verify_postback(postback)
    schema = schema_in_force([SCHEMA], estimated_install_time(postback, received_at))
    records = decode(postback, schema)
    return len(records) + int(verification.valid)


def measure(postbacks: list[dict[str, Any]], seconds: float,
            work: Callable[[dict[str, Any], datetime], int] = verify_and_decode) -> dict[str, Any]:
    received_at = datetime.now(UTC)
    valid = sum(verify_postback(p).valid for p in postbacks)
    for postback in postbacks * 50:  # warm-up: imports, caches, branch predictors
        work(postback, received_at)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for postback in postbacks:
            work(postback, received_at)
        done += len(postbacks)
    elapsed = time.perf_counter() - started
    return {"per_s": round(done / elapsed), "postbacks": len(postbacks), "valid_signatures": valid,
            "us_per_postback": round(1e6 * elapsed / done, 1)}


def ecdsa_floor(seconds: float) -> dict[str, int]:
    """Verifications per second of the signature alone (a fresh key per curve, same cost as Apple's):
    the ceiling for any SKAN verify on this core, whatever the Python around it."""
    floor = {}
    for name, curve in (("p256_verify_per_s", ec.SECP256R1()), ("p192_verify_per_s", ec.SECP192R1())):
        key = ec.generate_private_key(curve)
        message = "4.0\u2063com.example\u20635239\u2063525463029".encode()
        signature = key.sign(message, ec.ECDSA(SHA256()))
        public = key.public_key()
        done, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            public.verify(signature, message, ec.ECDSA(SHA256()))
            done += 1
        floor[name] = round(done / (time.perf_counter() - started))
    return floor


def prepared_checks(postbacks: list[dict[str, Any]]) -> list[Callable[[], None]]:
    """Only `public_key.verify` per postback: key, decoded signature and signed message built beforehand (a
    mismatch costs the same elliptic-curve work, so the result is ignored)."""
    algorithm = ec.ECDSA(SHA256())

    def check_of(postback: dict[str, Any]) -> Callable[[], None]:
        key = APPLE_P192_KEY if is_p192(postback) else APPLE_P256_KEY
        signature, message = base64.b64decode(postback["attribution-signature"]), signed_message(postback)

        def check() -> None:
            with contextlib.suppress(InvalidSignature):
                key.verify(signature, message, algorithm)

        return check

    return [check_of(p) for p in postbacks]


def us_per_item(run: Callable[[], None], items: int, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() < started + seconds:
        run()
        done += items
    return 1e6 * (time.perf_counter() - started) / done


def overhead_split(postbacks: list[dict[str, Any]], seconds: float, rounds: int = 20) -> dict[str, Any]:
    """verify + decode against the bare signature checks of the same postbacks, in alternating short windows:
    this core's speed drifts with the machine's load, so two distant windows would mostly measure the drift.
    Medians over the rounds; the difference is what the Python around the signature check costs."""
    received_at = datetime.now(UTC)
    checks = prepared_checks(postbacks)

    def work_all() -> None:
        for postback in postbacks:
            verify_and_decode(postback, received_at)

    def checks_all() -> None:
        for check in checks:
            check()

    window = seconds / (2 * rounds)
    pairs = [(us_per_item(work_all, len(postbacks), window), us_per_item(checks_all, len(checks), window))
             for _ in range(rounds)]
    work = statistics.median(w for w, _ in pairs)
    bare = statistics.median(b for _, b in pairs)
    return {"verify_decode_us_per_postback": round(work, 1), "signature_only_us_per_postback": round(bare, 1),
            "signature_only_per_s": round(1e6 / bare),
            "python_overhead_us_per_postback": round(statistics.median(w - b for w, b in pairs), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core (default: the last one)")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    signed, source = signed_postbacks()
    result: dict[str, Any] = {
        "cpu": cpu,
        "source": source,
        "signed": measure(signed, args.seconds),
        "signed_by_curve": {curve: measure(group, args.seconds / 4) for curve, group in by_curve(signed).items()},
        "unsigned_simulated": measure(simulated_postbacks(), args.seconds / 2),
        "signature_only": ecdsa_floor(args.seconds / 4),
        "overhead": overhead_split(signed, args.seconds),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
