"""SKAN verify + decode throughput on one core: what the SKAN decoder does per postback, minus I/O.

Per postback: `verify_postback` (Apple's ECDSA signature), the schema in force for its estimated install
time, and `decode` into install and event records. The postbacks are the signed examples from the team's
shared testdata (../shared/testdata/skan, P-192 and P-256 signatures, SKAN 1.0 to 4.0) when present; else
the guide's simulated test-app postbacks with a well-formed DER signature that does not match (a failed
verification costs the same elliptic-curve work as a successful one). The simulated postbacks without a
signature are measured apart: they skip the signature check.

`python -m bench.skan_bench [--seconds N] [--cpu N]` prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256

from services.skan.decode import SIMULATED_TEST_APP_SCHEMAS, decode, estimated_install_time, schema_in_force
from services.skan.verify import verify_postback
from tests.support.pipeline import REPO

TESTDATA = REPO.parent / "shared" / "testdata" / "skan"
SCHEMA = SIMULATED_TEST_APP_SCHEMAS["888707086"]  # conversion bitmask: value 63 -> six event records
# A DER ECDSA signature (SEQUENCE of two INTEGERs) that matches nothing.
UNMATCHED_SIGNATURE = base64.b64encode(bytes([0x30, 0x44, 0x02, 0x20, *range(1, 33), 0x02, 0x20, *range(33, 65)]))


def simulated_postbacks() -> list[dict[str, Any]]:
    """The guide's simulated test apps: values 7, 63 and 3 for apps 888707085, 888707086, 888707087."""
    base = {"version": "3.0", "ad-network-id": "example123.skadnetwork", "campaign-id": 42, "redownload": False,
            "source-app-id": 1234567891, "fidelity-type": 1, "did-win": True}
    return [{**base, "app-id": app_id, "transaction-id": f"6aafb7a5-0170-41b5-bbe4-fe71dedf1e{n:02d}",
             "conversion-value": value}
            for n, (app_id, value) in enumerate(((888707085, 7), (888707086, 63), (888707087, 3)))]


def signed_postbacks() -> tuple[list[dict[str, Any]], str]:
    files = sorted(TESTDATA.glob("*.json")) if TESTDATA.is_dir() else []
    examples = [json.loads(f.read_text()) for f in files]
    signed = [e["postback"] for e in examples if e.get("expected_valid") is True]
    if signed:
        return signed, f"{len(signed)} signed examples from {TESTDATA}"
    forged = [{**p, "attribution-signature": UNMATCHED_SIGNATURE.decode()} for p in simulated_postbacks()]
    return forged, "simulated postbacks with a non-matching DER signature (shared testdata not found)"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core (default: the last one)")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    signed, source = signed_postbacks()
    result = {"cpu": cpu, "source": source, "signed": measure(signed, args.seconds),
              "unsigned_simulated": measure(simulated_postbacks(), args.seconds / 2),
              "signature_only": ecdsa_floor(args.seconds / 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
