"""deploy/Dockerfile, read with dockerfile-parse (Debian has no hadolint; where one is on PATH it runs too):
multi-stage, a pinned base, a non-root user, `apprefer` as the entrypoint, a HEALTHCHECK, the constraints file,
a build context without secrets. Then deploy/healthcheck.py, which the HEALTHCHECK and the probes run."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest

from services.catalog import ADMIN, CONSUMERS, GATEWAY, forwarder
from shared.settings import Settings
from tests.deploy.checks import (
    DEPLOY,
    REPO,
    Image,
    exec_form,
    health_port_setting,
    host_path,
    listen_host_setting,
    listen_problems,
    read_image,
)
from tests.support.ports import free_port

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
# A tag with the full version (python:3.11.7-slim-bookworm), optionally a digest too; never `latest`.
PINNED = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$")
# What must never reach the build context: the dev database and secrets, the virtualenv, compose's .env.
PRIVATE = (".env", "deploy/.env", "var/apprefer.db", "var/admin.token", ".venv/bin/python", ".git/config")


def dockerfile_problems(dockerfile: str, dockerignore: str) -> list[str]:
    image = read_image(dockerfile)
    stages, final = image.stages, image.stages[-1]
    problems = []
    if len(stages) < 2 or not any(value.startswith("--from=") for value in final.values("COPY")):
        problems.append("not multi-stage: the last stage copies nothing from a build stage")
    problems += [f"base image {stage.base!r} is not pinned to a version" for stage in stages
                 if not PINNED.match(stage.base) or stage.base.endswith(":latest")]
    user = (final.values("USER") or ["root"])[-1].split(":")[0]
    if user in ("root", "0"):
        problems.append(f"the image runs as {user}")
    if image.entrypoint != ["apprefer"]:
        problems.append(f"ENTRYPOINT is {image.entrypoint}, not [\"apprefer\"]")
    problems += _healthcheck_problems(final.values("HEALTHCHECK"), image)
    # Every service the image runs listens beyond the container's loopback, where `docker run -p` reaches it.
    for service in (GATEWAY, ADMIN, CONSUMERS[0]):
        problems += listen_problems("the image", service, image.setting_env())
    copied = [word for stage in stages for value in stage.values("COPY") if not value.startswith("--from=")
              for word in value.split()[:-1]]
    if "constraints.txt" not in copied:
        problems.append("constraints.txt is not copied into the build")
    for stage in stages:
        problems += [f"`{value[:60]}...` installs without -c constraints.txt" for value in stage.values("RUN")
                     for install in re.split(r"&&|;", value) if "pip install" in install
                     and not re.search(r"(-c|--constraint)[ =]constraints\.txt", install)]
    ignored = _ignored(dockerignore)
    problems += [f".dockerignore keeps {source!r} out, which the Dockerfile copies" for source in copied
                 if source != "./" and ignored(source.rstrip("/"))]
    problems += [f".dockerignore lets {path!r} into the build context" for path in PRIVATE if not ignored(path)]
    return problems


def _healthcheck_problems(healthchecks: list[str], image: Image) -> list[str]:
    if not healthchecks or healthchecks[-1].strip().upper() == "NONE":
        return ["no HEALTHCHECK"]
    argv = exec_form(healthchecks[-1].split(" CMD ", 1)[-1].strip())
    scripts = [host_path(word, image) for word in argv if word.startswith("/")]
    if not scripts or any(script is None or not script.exists() for script in scripts):
        return [f"HEALTHCHECK runs {argv}, no script of the repository copied into the image"]
    return []


def _ignored(dockerignore: str) -> Callable[[str], bool]:
    """Docker's rule, simplified to what .dockerignore uses: the last pattern matching a path or one of its
    folders decides, `!` lets it back in."""
    patterns = [line.strip() for line in dockerignore.splitlines() if line.strip() and not line.startswith("#")]

    def matches(path: str, pattern: str) -> bool:
        pattern = pattern.rstrip("/").removeprefix("**/")
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[:end]), pattern) for end in range(1, len(parts) + 1)) or any(
            fnmatch.fnmatchcase(part, pattern) for part in parts)

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            if matches(path, pattern.lstrip("!")):
                verdict = not negated
        return verdict

    return ignored


def test_dockerfile_is_multi_stage_pinned_non_root_and_runs_apprefer() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text()) == []
    if shutil.which("hadolint"):
        done = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_the_python_of_the_tests() -> None:
    """The constraints were resolved on this Python: the image must have the same minor version."""
    import sys

    base = read_image(DOCKERFILE.read_text()).stages[-1].base
    assert re.match(rf"python:{sys.version_info.major}\.{sys.version_info.minor}\.", base), base


BROKEN_DOCKERFILES = [
    pytest.param("USER 10001:10001", "USER root", "runs as root", id="root"),
    pytest.param("\nUSER 10001:10001", "\n", "runs as root", id="no user"),
    pytest.param('ENTRYPOINT ["apprefer"]', 'ENTRYPOINT ["python", "-m", "services.cli"]', "ENTRYPOINT is",
                 id="entrypoint"),
    pytest.param("PYTHON_IMAGE=python:3.11.7-slim-bookworm", "PYTHON_IMAGE=python:3.11-slim", "is not pinned",
                 id="unpinned base"),
    pytest.param("PYTHON_IMAGE=python:3.11.7-slim-bookworm", "PYTHON_IMAGE=python:latest", "is not pinned",
                 id="latest"),
    pytest.param("pip install --no-deps -c constraints.txt -e .", "pip install --no-deps -e .",
                 "without -c constraints.txt", id="no constraints"),
    pytest.param("HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK", id="no healthcheck"),
    pytest.param("APPREFER_METRICS_HOST=0.0.0.0", "APPREFER_METRICS_HOST=127.0.0.1",
                 "the image: attribution listens on 127.0.0.1 (APPREFER_METRICS_HOST)", id="consumers on loopback"),
    pytest.param("    APPREFER_GATEWAY_HOST=0.0.0.0 \\\n", "", "the image: gateway listens on 127.0.0.1",
                 id="gateway on its default"),
    pytest.param("/app/deploy/healthcheck.py", "/app/deploy/health.py", "no script of the repository",
                 id="healthcheck script"),
    pytest.param("COPY --from=build /opt/venv /opt/venv\nCOPY --from=build /app /app",
                 "COPY schemas/ /app/schemas/", "not multi-stage", id="single stage"),
]


@pytest.mark.parametrize(("original", "replacement", "complaint"), BROKEN_DOCKERFILES)
def test_a_broken_dockerfile_is_caught(original: str, replacement: str, complaint: str) -> None:
    text = DOCKERFILE.read_text()
    assert original in text, f"{original!r} is no longer in the Dockerfile: update this test"
    found = dockerfile_problems(text.replace(original, replacement), DOCKERIGNORE.read_text())
    assert any(complaint in problem for problem in found), found


def test_a_dockerignore_that_lets_secrets_in_is_caught() -> None:
    found = dockerfile_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text().replace("\n*\n", "\n"))
    assert any("lets '.env' into the build context" in problem for problem in found), found
    found = dockerfile_problems(DOCKERFILE.read_text(), DOCKERIGNORE.read_text().replace("!services/\n", ""))
    assert any("keeps 'services/' out" in problem for problem in found), found


# -- deploy/healthcheck.py ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_knows_the_ports_settings_give(healthcheck: ModuleType) -> None:
    aliases = {str(info.alias): info.default for info in Settings.model_fields.values() if info.alias}
    assert {name: aliases[name] for name in healthcheck.DEFAULT_PORTS} == {
        name: int(port) for name, port in healthcheck.DEFAULT_PORTS.items()}
    for service in (GATEWAY, ADMIN, *CONSUMERS, forwarder("meta")):
        name = service.command[0]
        assert healthcheck.PORT_VARIABLE.get(name, "APPREFER_METRICS_PORT") == health_port_setting(service)
        assert healthcheck.HOST_VARIABLE.get(name, "APPREFER_METRICS_HOST") == listen_host_setting(service)
        assert aliases[listen_host_setting(service)] == healthcheck.DEFAULT_HOST


def test_healthcheck_finds_the_service_a_container_runs(healthcheck: ModuleType) -> None:
    assert healthcheck.service_of(["/opt/venv/bin/python", "/opt/venv/bin/apprefer", "run", "gateway"]) == "gateway"
    assert healthcheck.service_of(["python", "-m", "services.cli", "run", "forwarder", "--network", "meta"]) == (
        "forwarder")
    assert healthcheck.service_of(["/opt/venv/bin/apprefer", "db", "upgrade"]) is None
    assert healthcheck.service_of(["/bin/sh", "-c", "apprefer db upgrade && apprefer topics create"]) is None
    env = {"APPREFER_ADMIN_PORT": "9999", "APPREFER_METRICS_PORT": "9100"}
    assert healthcheck.readyz_url("admin", env) == "http://127.0.0.1:9999/readyz"
    assert healthcheck.readyz_url("gateway", env) == "http://127.0.0.1:8080/readyz"
    assert healthcheck.readyz_url("audit", env) == "http://127.0.0.1:9100/readyz"
    with pytest.raises(ValueError, match="APPREFER_METRICS_PORT is 0"):
        healthcheck.readyz_url("audit", {})
    # Every interface is asked on loopback; an address of its own, there.
    assert healthcheck.readyz_url("audit", {**env, "APPREFER_METRICS_HOST": "0.0.0.0"}) == (
        "http://127.0.0.1:9100/readyz")
    assert healthcheck.readyz_url("audit", {**env, "APPREFER_METRICS_HOST": "10.1.2.3"}) == (
        "http://10.1.2.3:9100/readyz")
    assert healthcheck.readyz_url("gateway", {"APPREFER_GATEWAY_HOST": "::"}) == "http://[::1]:8080/readyz"


@pytest.fixture
def answering() -> Iterator[str]:
    """A server whose path is the status it answers: /200, /503."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(self.path.strip("/")))
            self.end_headers()
            self.wfile.write(b'{"status":"unavailable"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_passes_on_2xx_only(healthcheck: ModuleType, answering: str) -> None:
    assert healthcheck.main([f"{answering}/200"]) == 0
    assert healthcheck.main([f"{answering}/503"]) == 1
    assert healthcheck.main([f"{answering}/404"]) == 1
    assert healthcheck.main([f"http://127.0.0.1:{free_port()}/readyz"]) == 1  # nothing listens
