"""constraints.txt pins what `make setup` installs and deploy/Dockerfile installs: the tests and the image run
the same versions."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement

from tests.deploy.checks import REPO

CONSTRAINTS = REPO / "constraints.txt"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    pinned = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, equals, version = line.partition("==")
            assert equals, f"constraints.txt: {line!r} is not a pin (name==version)"
            pinned[normalized(name)] = version.strip()
    return pinned


def needed() -> dict[str, str]:
    """Every distribution apprefer and its dev extra need (pyproject.toml as it is now, then what each installed
    dependency requires), with the version installed."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [(Requirement(text), "pyproject.toml")
               for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    found: dict[str, str] = {}
    while pending:
        requirement, needed_by = pending.pop()
        key = normalized(requirement.name)
        if key in found:
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            raise AssertionError(f"{requirement} (needed by {needed_by}) is not installed: make setup") from None
        found[key] = dist.version
        environments = [{"extra": extra} for extra in requirement.extras or {""}]
        for text in dist.requires or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in environments):
                pending.append((dependency, requirement.name))
    return found


def test_constraints_pin_every_dependency_at_the_installed_version() -> None:
    pinned = pins()
    assert "apprefer" not in pinned and "acme-network" not in pinned
    unpinned = sorted(set(needed()) - set(pinned))
    assert not unpinned, f"not in constraints.txt: {unpinned}; run `make constraints` and commit it"
    differ = {name: (version, pinned[name]) for name, version in needed().items() if pinned[name] != version}
    assert not differ, f"installed vs pinned: {differ}; `make setup` installs the pins, `make constraints` moves them"


def test_make_setup_and_the_image_install_with_the_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(BIN)/apprefer:", 1)[1].split("\n\n", 1)[0]
    assert recipe.splitlines()[0].split() == ["pyproject.toml", "constraints.txt"], "setup must rerun on new pins"
    assert "pip install --quiet -c constraints.txt -e '.[dev]'" in recipe
    assert "\nconstraints:" in makefile and "make constraints" in CONSTRAINTS.read_text()
    assert "-c constraints.txt" in (REPO / "deploy" / "Dockerfile").read_text()
