"""The health check of an apprefer container: GET a URL; exit 0 on a 2xx answer, 1 on anything else.

    python /app/deploy/healthcheck.py http://127.0.0.1:8080/readyz    what compose and the Kubernetes probes run
    python /app/deploy/healthcheck.py                                 what the image's HEALTHCHECK runs

Without a URL it asks the /readyz of the service the container runs: the `apprefer run <service>` process found
in /proc, at the address and port that service reads (APPREFER_GATEWAY_HOST and _PORT, APPREFER_ADMIN_HOST and
_PORT, or a consumer's APPREFER_METRICS_HOST and _PORT; every interface, 0.0.0.0, is asked on loopback). A
container that runs a one-shot command (`apprefer db upgrade`) has nothing to check.

Standard library only: it runs every few seconds, inside the container, and must start in milliseconds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

# shared/settings.py's defaults; tests/deploy checks that they still are.
DEFAULT_PORTS = {"APPREFER_GATEWAY_PORT": "8080", "APPREFER_ADMIN_PORT": "8081", "APPREFER_METRICS_PORT": "0"}
PORT_VARIABLE = {"gateway": "APPREFER_GATEWAY_PORT", "admin": "APPREFER_ADMIN_PORT"}  # the rest: consumers
HOST_VARIABLE = {"gateway": "APPREFER_GATEWAY_HOST", "admin": "APPREFER_ADMIN_HOST"}  # the rest: consumers
DEFAULT_HOST = "127.0.0.1"  # each of them, by default
# An address that means every interface, and the one to ask it on from inside the container.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def service_of(argv: list[str]) -> str | None:
    """The service of an `apprefer run <service> ...` command line (also `python -m services.cli run ...`)."""
    for index, arg in enumerate(argv[:-2]):
        if (Path(arg).name == "apprefer" or arg == "services.cli") and argv[index + 1] == "run":
            return argv[index + 2]
    return None


def readyz_url(service: str, env: Mapping[str, str]) -> str:
    """Where `service` answers /readyz inside its container."""
    variable = PORT_VARIABLE.get(service, "APPREFER_METRICS_PORT")
    port = env.get(variable) or DEFAULT_PORTS[variable]
    if port == "0":
        raise ValueError(f"{service} serves no health endpoint: {variable} is 0")
    host = env.get(HOST_VARIABLE.get(service, "APPREFER_METRICS_HOST")) or DEFAULT_HOST
    host = WILDCARD_HOSTS.get(host, host)
    return f"http://[{host}]:{port}/readyz" if ":" in host else f"http://{host}:{port}/readyz"


def command_lines(proc: Path = Path("/proc")) -> Iterable[list[str]]:
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            yield [arg.decode(errors="replace") for arg in cmdline.read_bytes().split(b"\0") if arg]
        except OSError:  # the process ended meanwhile
            continue


def check(url: str, timeout: float = 4.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:  # 503 from /readyz: a check failed, the body says which
        return False, f"{url}: {exc.code} {exc.read(500).decode(errors='replace')}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str]) -> int:
    if argv:
        url = argv[0]
    else:
        service = next((s for line in command_lines() if (s := service_of(line))), None)
        if service is None:
            return 0  # a one-shot command, or a shell: no service to ask
        try:
            url = readyz_url(service, os.environ)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
    healthy, detail = check(url)
    print(detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
