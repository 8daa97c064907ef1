"""The package as a wheel (`pip wheel .`) carries what the services read at run time besides code: the Avro
schemas (schemas/, through the link shared/schemas) and the dashboard's templates and static files; and the codec
works from the wheel's files alone, not only from a checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = out / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "*.egg-info", "tests", "bench", "docs", "deploy", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w", str(out)],
                   check=True, cwd=out, timeout=300)
    (built,) = out.glob("apprefer-*.whl")
    return built


def test_the_wheel_carries_the_schemas_and_the_dashboards_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    schemas = {f"shared/schemas/{path.name}" for path in (REPO / "schemas").glob("*.avsc")}
    assert schemas and schemas <= names, sorted(schemas - names)
    dashboard = REPO / "services" / "admin" / "dashboard"
    files = {path.relative_to(REPO).as_posix() for folder in ("templates", "static")
             for path in (dashboard / folder).rglob("*") if path.is_file()}
    assert files and files <= names, sorted(files - names)


def test_the_codec_works_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path / "installed")
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import shared.avro as avro; "
             "assert avro.__file__.startswith(sys.argv[1]), avro.__file__; "
             "print(len(avro.codec().encode('apprefer.Device', {'device_id': 'd-1'})))")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "installed")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10
