"""Small helpers for picking and waiting on local TCP ports."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

# The kernel hands out ports for bind(0) and outgoing connections from this range only; a block picked below it
# cannot be taken meanwhile by another test's free_port() or client socket (pytest-xdist runs two at once).
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{host}:{port} did not accept connections within {timeout:.1f}s (last error: {last_error})"
            )
        time.sleep(0.05)


def free_port_block(size: int) -> int:
    """A first port whose next `size` ports are free too, below the kernel's ephemeral range (for `apprefer dev`,
    which puts its services on ports that follow the gateway's)."""
    low = int(_EPHEMERAL.read_text().split()[0]) if _EPHEMERAL.exists() else 32768
    for _ in range(100):
        first = random.randrange(10_000, low - size)
        probes: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise AssertionError(f"no block of {size} free ports below {low}")
