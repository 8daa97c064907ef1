"""`apprefer dev` (what `make run` starts): bundled broker, SQLite, every service; SIGTERM stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pipeline import REPO, http_call, wait_until
from tests.support.ports import free_port

pytestmark = pytest.mark.slow


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("given", ["embedded", "external"])
def test_dev_runs_the_whole_system_and_stops_cleanly(given: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    gateway_port, broker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPREFER_", "KAFKA_", "DATABASE_"))}
    env.update(APPREFER_DATA_DIR=str(tmp_path / "var"), APPREFER_GATEWAY_PORT=str(gateway_port),
               APPREFER_DEV_BROKER_PORT=str(broker_port), APPREFER_LOG_LEVEL="WARNING")
    if given == "external":  # a broker and a PostgreSQL of the user's: dev starts no broker, uses no SQLite
        env["KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue("fresh_bootstrap")
        env["DATABASE_URL"] = request.getfixturevalue("empty_pg_url")
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen([sys.executable, "-m", "services.cli", "dev"], env=env, cwd=REPO, stdout=log,
                           stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        def ready() -> bool:
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                return http_call("GET", f"{base}/readyz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=60, what="apprefer dev to be ready")
        token = (tmp_path / "var" / "admin.token").read_text().strip()
        assert (tmp_path / "var" / "apprefer.db").exists() is (given == "embedded")
        headers = {"Authorization": f"Bearer {token}"}
        status, _, app = http_call("POST", f"{base}/admin/v1/apps", {"name": "dev", "platform": "ios"}, headers)
        assert status == 201
        status, _, key = http_call("POST", f"{base}/admin/v1/apps/{app['app_id']}/keys", {"mode": "live"}, headers)
        event = {"event_id": "dev-install", "event_name": "install", "event_time": int(time.time()),
                 "device": {"device_id": "iphone-1"}}
        status, _, body = http_call("POST", f"{base}/v1/events", event, {"Authorization": f"Bearer {key['key']}"})
        assert (status, body) == (202, {"accepted": 1})

        def attributed() -> bool:
            status, _, body = http_call("GET", f"{base}/admin/v1/apps/{app['app_id']}/attribution?device_id=iphone-1",
                                        headers=headers)
            return status == 200 and body["attributed"] is False

        wait_until(attributed, timeout=30, what="the install to be processed")
        children = children_of(dev.pid)
        # gateway, attribution, skan, fanout, audit, four forwarders (+ the broker when embedded)
        assert len(children) == (10 if given == "embedded" else 9), children
    finally:
        dev.send_signal(signal.SIGTERM)
        code = dev.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()
    assert not [pid for pid in children if alive(pid)]
