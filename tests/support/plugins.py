"""Network plugins registered for a test without installing them: a `*.dist-info` directory with the package's
entry points, beside the package, on the path. importlib.metadata reads it as it reads an installed package's."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.support.pipeline import REPO

PLUGINS = REPO / "tests" / "plugins"


def register(package_dir: Path, site: Path) -> list[str]:
    """Writes `site/<name>-<version>.dist-info` from `package_dir/pyproject.toml`; returns the PYTHONPATH
    entries (site first) that make the plugin importable and discoverable."""
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {version}\n")
    lines = []
    for group, entries in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{entry} = {target}" for entry, target in entries.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return [str(site), str(package_dir)]
