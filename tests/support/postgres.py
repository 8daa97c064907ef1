"""A throwaway PostgreSQL server (Debian's ``postgresql`` package) for tests."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from tests.support.ports import free_port

_PG_USER = "postgres"
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_pg_bin_dir() -> Path:
    """Directory holding ``initdb``/``pg_ctl``: the newest /usr/lib/postgresql/<ver>/bin, else PATH."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> tuple[int, ...]:
        raw = Path(path).parent.parent.name
        return tuple(int(p) for p in raw.split(".") if p.isdigit())

    if candidates:
        return Path(max(candidates, key=version)).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb and no initdb on PATH). "
        "Install them with `apt-get install postgresql`, or point APPREFER_TEST_DATABASE_URL at an "
        "existing server whose user may CREATE DATABASE."
    )


def _to_libpq_url(url: str | URL) -> str:
    """Turn a SQLAlchemy URL (``postgresql+psycopg://...``) into a libpq conninfo URI."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _check_db_name(name: str) -> None:
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid test database name {name!r}: use lowercase letters, digits, '_' (<=63)")


def create_database(server_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server at ``server_url``; return its SQLAlchemy URL."""
    _check_db_name(name)
    with psycopg.connect(_to_libpq_url(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (terminating any leftover connections to it)."""
    _check_db_name(name)
    url = make_url(server_url)
    if url.database == name:
        raise ValueError(f"refusing to drop the database the server URL connects to ({name!r})")
    with psycopg.connect(_to_libpq_url(url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class PostgresProcess:
    """``initdb`` + ``pg_ctl start`` a private cluster on a free port; trust auth, user ``postgres``."""

    def __init__(self, port: int | None = None, startup_timeout: float = 60.0) -> None:
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.url = f"postgresql+psycopg://{_PG_USER}@127.0.0.1:{self.port}/postgres"
        self.base_dir: Path | None = None
        self._bin_dir: Path | None = None
        self._as_root = os.geteuid() == 0
        self._started = False

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "PostgresProcess not started"
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None, "PostgresProcess not started"
        return self.base_dir / "postgres.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError) as exc:
            return f"<no server log: {exc}>"
        return "\n".join(text.splitlines()[-lines:]) or "<empty>"

    def _run(self, args: Sequence[str], what: str, timeout: float) -> None:
        assert self._bin_dir is not None and self.base_dir is not None
        cmd = [str(self._bin_dir / args[0]), *args[1:]]
        if self._as_root:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            cmd = [runuser, "-u", _PG_USER, "--", *cmd]
        try:
            res = subprocess.run(
                cmd,
                cwd=self.base_dir,  # the postgres user may not be able to enter our cwd
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{what} timed out after {timeout:.0f}s: {' '.join(cmd)}\n"
                f"server log ({self.log_path}):\n{self.log_tail()}"
            ) from exc
        if res.returncode != 0:
            raise RuntimeError(
                f"{what} failed with exit code {res.returncode}: {' '.join(cmd)}\n"
                f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}\n"
                f"server log ({self.log_path}):\n{self.log_tail()}"
            )

    def start(self) -> Self:
        if self._started:
            raise RuntimeError("postgres already started")
        self._bin_dir = find_pg_bin_dir()
        self.base_dir = Path(tempfile.mkdtemp(prefix="apprefer-pg-"))
        self._started = True
        try:
            if self._as_root:
                # initdb/postgres refuse to run as root: hand the cluster directory to ``postgres``.
                try:
                    pw = pwd.getpwnam(_PG_USER)
                except KeyError as exc:
                    raise RuntimeError(
                        f"running as root but there is no {_PG_USER!r} user; `apt-get install postgresql`"
                    ) from exc
                os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
            self._run(
                [
                    "initdb",
                    "-A", "trust",
                    "-U", _PG_USER,
                    "-D", str(self.data_dir),
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                "initdb",
                timeout=self.startup_timeout,
            )  # fmt: skip
            opts = (
                f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self._run(
                [
                    "pg_ctl",
                    "-D", str(self.data_dir),
                    "-l", str(self.log_path),
                    "-o", opts,
                    "-w",
                    "-t", str(int(self.startup_timeout)),
                    "start",
                ],
                "pg_ctl start",
                timeout=self.startup_timeout + 10,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """``pg_ctl stop -m immediate`` (SIGKILL as a fallback), then delete the cluster directory."""
        if not self._started:
            return
        self._started = False
        try:
            if (self.data_dir / "postmaster.pid").exists():
                try:
                    self._run(
                        ["pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                        "pg_ctl stop",
                        timeout=30,
                    )
                except RuntimeError:
                    self._kill_postmaster()
        finally:
            if self.base_dir is not None:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
