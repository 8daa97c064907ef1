"""Child processes for `apprefer dev`: each dies with its parent, its output is passed through with
its last lines kept, and one that keeps crashing is given up on instead of restarted for ever."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
LAST_LINES = 20
CRASHES_ALLOWED = 5  # exits within CRASH_WINDOW_SECONDS before a child is given up on
CRASH_WINDOW_SECONDS = 120.0
RESTART_BACKOFF_SECONDS = 2.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, however it dies (SIGKILL, a closed
    terminal), so no child outlives `apprefer dev`. Linux only; elsewhere the orderly stop does it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # Our own session: a terminal's Ctrl-C or hang-up reaches only the parent, which stops us in order.
    os.setsid()


class Child:
    """One supervised process: `name` for messages, its command, its environment."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], log_path: Path | None = None,
                 unshown: Callable[[str], bool] | None = None) -> None:
        self.name, self.command, self.env = name, list(command), env
        self.log_path = log_path
        self._unshown = unshown  # lines kept (last_lines) but not passed through: a child's answer to dev itself
        self.process: subprocess.Popen[bytes] | None = None
        self.last_lines: deque[str] = deque(maxlen=LAST_LINES)
        self.exits: deque[float] = deque()
        self.given_up = False
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._pump = threading.Thread(target=self._pass_through, name=f"output-{self.name}", daemon=True)
        self._pump.start()

    def _pass_through(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        log = self.log_path.open("ab") if self.log_path else None
        try:
            for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.last_lines.append(line)
                if log is not None:
                    log.write(raw)
                    log.flush()
                elif self._unshown is None or not self._unshown(line):
                    print(line, file=sys.stderr, flush=True)
        finally:
            if log is not None:
                log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exited(self) -> int | None:
        """The exit code when the child has exited since the last look (None while it runs)."""
        if self.process is None or self.process.poll() is None:
            return None
        return self.process.returncode

    def note_exit(self, now: float) -> bool:
        """Records an exit; False when the child has crashed too often lately to be restarted."""
        self.exits.append(now)
        while self.exits and now - self.exits[0] > CRASH_WINDOW_SECONDS:
            self.exits.popleft()
        if len(self.exits) >= CRASHES_ALLOWED:
            self.given_up = True
        return not self.given_up

    def terminate(self) -> None:
        if self.running and self.process is not None:
            self.process.terminate()

    def wait(self, deadline: float) -> None:
        """Until it exits or `deadline` (monotonic) passes; then it is killed."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._pump is not None:
            self._pump.join(timeout=2)


def stop(children: Sequence[Child], timeout: float) -> None:
    """SIGTERM to all, then wait together; what is still running at the deadline is killed."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait(deadline)
