"""`apprefer dev` (what `make run` starts): bundled broker, SQLite, every service; SIGTERM stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.catalog import services
from tests.support.pipeline import REPO, http_call, wait_until
from tests.support.ports import free_port_block as port_block

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


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


DEV_PORTS = 26  # the gateway's, the admin service's, the consumers' (gateway + 2 and on) and the fakes' (+ 20 and on)


def dev_env(tmp_path: Path, gateway_port: int, broker_port: int, admin_port: int | None = None) -> dict[str, str]:
    """`apprefer dev`'s environment on the given ports (the admin service's: a free one unless given; dev's
    default, 8081, may be taken on a test machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPREFER_", "KAFKA_", "DATABASE_"))}
    env.update(APPREFER_DATA_DIR=str(tmp_path / "var"), APPREFER_GATEWAY_PORT=str(gateway_port),
               APPREFER_ADMIN_PORT=str(admin_port if admin_port is not None else port_block(1)),
               APPREFER_DEV_BROKER_PORT=str(broker_port), APPREFER_LOG_LEVEL="WARNING")
    return env


def admin_base(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['APPREFER_ADMIN_PORT']}"


def start_dev(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """`apprefer dev ARGS`, its output in tmp_path/dev.log, once its gateway and its admin service are ready."""
    with (tmp_path / "dev.log").open("wb") as log:
        dev = subprocess.Popen([sys.executable, "-m", "services.cli", "dev", *args], env=env, cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT)
    bases = (f"http://127.0.0.1:{env['APPREFER_GATEWAY_PORT']}", admin_base(env))

    def ready() -> bool:
        assert dev.poll() is None, (tmp_path / "dev.log").read_text()
        try:
            return all(http_call("GET", f"{base}/readyz", timeout=2)[0] == 200 for base in bases)
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60, what="apprefer dev to be ready")
    except BaseException:
        stop_dev(dev)
        raise
    return dev


def stop_dev(dev: subprocess.Popen[bytes]) -> int:
    dev.send_signal(signal.SIGTERM)
    return dev.wait(timeout=30)


@pytest.mark.parametrize("given", ["embedded", "external"])
def test_dev_runs_the_whole_system_and_stops_cleanly(given: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    gateway_port, broker_port = free_port_block(), port_block(1)
    env = dev_env(tmp_path, gateway_port, broker_port)
    if given == "external":  # a broker and a PostgreSQL of the user's: dev starts no broker, uses no SQLite
        env["KAFKA_BOOTSTRAP_SERVERS"] = request.getfixturevalue("fresh_bootstrap")
        env["DATABASE_URL"] = request.getfixturevalue("empty_pg_url")
    dev = start_dev(env, tmp_path)
    base, admin = f"http://127.0.0.1:{gateway_port}", admin_base(env)
    data_dir = tmp_path / "var"
    try:
        token = (data_dir / "admin.token").read_text().strip()
        assert (data_dir / "apprefer.db").exists() is (given == "embedded")
        # The database and the generated secrets are the owner's only.
        assert mode(data_dir) == 0o700
        assert mode(data_dir / "admin.token") == mode(data_dir / "secret.key") == 0o600
        if given == "embedded":
            assert mode(data_dir / "apprefer.db") == 0o600
        headers = {"Authorization": f"Bearer {token}"}
        assert http_call("GET", f"{base}/admin/v1/apps", headers=headers)[0] == 404  # not on the gateway's port
        status, _, app = http_call("POST", f"{admin}/admin/v1/apps", {"name": "dev", "platform": "ios"}, headers)
        assert status == 201
        status, _, key = http_call("POST", f"{admin}/admin/v1/apps/{app['app_id']}/keys", {"mode": "live"}, headers)
        event = {"event_id": "dev-install", "event_name": "install", "event_time": int(time.time()),
                 "device": {"device_id": "iphone-1"}}
        status, _, body = http_call("POST", f"{base}/v1/events", event, {"Authorization": f"Bearer {key['key']}"})
        assert (status, body) == (202, {"accepted": 1})

        def attributed() -> bool:
            status, _, body = http_call("GET", f"{admin}/admin/v1/apps/{app['app_id']}/attribution?device_id=iphone-1",
                                        headers=headers)
            return status == 200 and body["attributed"] is False

        wait_until(attributed, timeout=30, what="the install to be processed")
        children = children_of(dev.pid)
        # the gateway, the admin service, the consumers, a forwarder per network (+ the broker when embedded)
        assert len(children) == len(services()) + (given == "embedded"), children
    finally:
        code = stop_dev(dev)
    assert code == 0, (tmp_path / "dev.log").read_text()
    assert not [pid for pid in children if alive(pid)]
    assert f"admin token in {data_dir / 'admin.token'}" in (tmp_path / "dev.log").read_text()


def test_dev_with_secrets_in_the_environment_writes_no_secret_file(tmp_path: Path) -> None:
    gateway_port, broker_port = free_port_block(), port_block(1)
    env = dev_env(tmp_path, gateway_port, broker_port)
    env.update(APPREFER_ADMIN_TOKEN="admin-token-from-env", APPREFER_SECRET_KEY="secret-key-from-env")
    dev = start_dev(env, tmp_path)
    admin = admin_base(env)
    data_dir = tmp_path / "var"
    try:
        headers = {"Authorization": "Bearer admin-token-from-env"}
        status, _, app = http_call("POST", f"{admin}/admin/v1/apps", {"name": "dev", "platform": "ios"}, headers)
        assert status == 201, app  # the variable's token is the one in use
        status, _, stored = http_call("PUT", f"{admin}/admin/v1/apps/{app['app_id']}/integrations/meta",
                                      {"settings": {"dataset_id": "1"}, "credentials": {"access_token": "t"}},
                                      headers)
        assert status == 200 and stored["credentials_set"] is True  # encrypted with the variable's key
        assert mode(data_dir) == 0o700
        # apprefer.db and, while the services run, its -wal and -shm files
        database_files = {path.name: mode(path) for path in data_dir.iterdir() if path.name.startswith("apprefer.db")}
        assert "apprefer.db" in database_files and set(database_files.values()) == {0o600}, database_files
    finally:
        code = stop_dev(dev)
    log = (tmp_path / "dev.log").read_text()
    assert code == 0, log
    assert "admin token from APPREFER_ADMIN_TOKEN" in log and "admin.token" not in log
    assert not (data_dir / "admin.token").exists() and not (data_dir / "secret.key").exists()


def start_dev_with(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, str], str]:
    first = free_port_block()
    # The admin service on the port after the gateway's, as dev's defaults have it (8080, 8081): in the block.
    env = dev_env(tmp_path, first, port_block(1), admin_port=first + 1)
    return start_dev(env, tmp_path, *args), env, f"http://127.0.0.1:{env['APPREFER_GATEWAY_PORT']}"


def free_port_block() -> int:
    """The gateway's port, and room after it for the admin service's, the consumers' and the fakes'."""
    return port_block(DEV_PORTS)


@pytest.mark.parametrize("how", ["SIGINT", "SIGHUP", "SIGKILL"])
def test_no_child_outlives_apprefer_dev(how: str, tmp_path: Path) -> None:
    dev, _env, _base = start_dev_with(tmp_path)
    try:
        children = children_of(dev.pid)
        assert len(children) == len(services()) + 1, children  # every service and the broker
    except BaseException:
        stop_dev(dev)  # a failure here must not leave the whole system running
        raise
    dev.send_signal(getattr(signal, how))
    dev.wait(timeout=60)
    wait_until(lambda: not [pid for pid in children if alive(pid)], timeout=30, what="every child gone")
    log = (tmp_path / "dev.log").read_text()
    if how != "SIGKILL":
        assert dev.returncode == 0 and log.rstrip().endswith("apprefer dev: stopped"), log[-2000:]


@pytest.mark.parametrize("variable", ["APPREFER_GATEWAY_PORT", "APPREFER_ADMIN_PORT"])
def test_a_taken_port_is_one_line_naming_the_variable(tmp_path: Path, variable: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dev_env(tmp_path, free_port_block(), port_block(1))
        env[variable] = str(port)
        done = subprocess.run([sys.executable, "-m", "services.cli", "dev"], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"apprefer dev: port {port} is taken (another apprefer dev?); "
                                   f"set {variable} to use other ports")


def test_the_readme_walkthrough_ends_in_a_delivered_purchase_with_fake_networks(tmp_path: Path) -> None:
    """The README's steps, as a newcomer pastes them, against `apprefer dev --fake-networks`: the admin API at
    $ADMIN (APPREFER_ADMIN_PORT), events and the click at the gateway ($GW), the link's URL the gateway's."""
    dev, env, base = start_dev_with(tmp_path, "--fake-networks")
    api = f"{admin_base(env)}/admin/v1"
    try:
        token = (tmp_path / "var" / "admin.token").read_text().strip()
        admin = {"Authorization": f"Bearer {token}"}
        app = http_call("POST", f"{api}/apps", {"name": "Demo", "platform": "android",
                        "store_url": "https://play.google.com/store/apps/details?id=com.demo"}, admin)[2]
        key = http_call("POST", f"{api}/apps/{app['app_id']}/keys", {"mode": "live"}, admin)[2]["key"]
        status, _, _ = http_call("PUT", f"{api}/apps/{app['app_id']}/integrations/meta",
                                 {"settings": {"dataset_id": "123"}, "credentials": {"access_token": "EAAB-demo"}},
                                 admin)
        assert status == 200
        assert http_call("POST", f"{api}/apps/{app['app_id']}/integrations/meta/test", None, admin)[2]["ok"]
        link = http_call("POST", f"{api}/apps/{app['app_id']}/links", {"network": "meta",
                         "campaign": "summer"}, admin)[2]["url"]
        assert link.startswith(f"{base}/c/"), link  # APPREFER_PUBLIC_BASE_URL unset: the gateway's host and port
        assert http_call("GET", f"{link}?fbclid=IwAR0abc", headers={"User-Agent": "Mozilla/5.0"})[0] == 302
        now = int(time.time())
        for event in ({"event_id": "e1", "event_name": "install", "event_time": now, "device": {"device_id": "d1"}},
                      {"event_id": "p1", "event_name": "purchase", "event_time": now, "device": {"device_id": "d1"},
                       "revenue": {"amount": 4.99, "currency": "USD"}}):
            assert http_call("POST", f"{base}/v1/events", event, {"Authorization": f"Bearer {key}",
                             "User-Agent": "Mozilla/5.0"})[0] == 202

        def delivered() -> bool:
            records = http_call("GET", f"{api}/audit?event_id=p1", headers=admin)[2]["records"]
            return any(r["status"] == "delivered" and r["network"] == "meta" for r in records)

        wait_until(delivered, timeout=60, what="the purchase delivered to the fake Meta")
        attribution = http_call("GET", f"{api}/apps/{app['app_id']}/attribution?device_id=d1", headers=admin)[2]
        assert attribution["click_id"] == "IwAR0abc"
        said = (tmp_path / "dev.log").read_text()
        # The fakes' URLs in dev's words, not the JSON line the fakes' process hands dev.
        assert "apprefer dev: fake networks: google_ads http://" in said and '"base_url"' not in said, said[:2000]
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=60)
