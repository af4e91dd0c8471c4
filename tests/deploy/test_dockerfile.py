"""The Dockerfile builds the package that pyproject.toml describes and runs it unprivileged."""

from __future__ import annotations

import fnmatch
import shlex

from tests.deploy import files


def instructions(name: str) -> list[str]:
    return [args for instruction, args in files.dockerfile_instructions() if instruction == name]


def copied_sources() -> list[str]:
    sources: list[str] = []
    for args in instructions("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources.extend(w.rstrip("/") or "." for w in words[:-1])
    return sources


def test_base_image_and_environment() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]
    env = " ".join(instructions("ENV"))
    assert "PYTHONUNBUFFERED=1" in shlex.split(env)


def test_default_command_runs_the_worker_module() -> None:
    (cmd,) = instructions("CMD")
    assert files.exec_form(cmd) == ["python", "-m", "worker"]
    assert (files.ROOT / "worker" / "__main__.py").is_file()


def test_runs_as_a_non_root_user_after_installing() -> None:
    steps = files.dockerfile_instructions()
    users = [i for i, (name, _) in enumerate(steps) if name == "USER"]
    assert users, "Dockerfile: no USER, the process would run as root"
    last_user = users[-1]
    assert steps[last_user][1].split(":")[0] not in ("root", "0")
    runs = [i for i, (name, _) in enumerate(steps) if name == "RUN"]
    assert max(runs) < last_user, "Dockerfile: a RUN after USER would need root"
    installs = [args for args in instructions("RUN") if "pip install" in args]
    # Pinned dependencies from the production lock, then Tidings alone.
    assert installs == [
        "pip install --no-cache-dir -r requirements/lock.txt",
        "pip install --no-cache-dir --no-deps .",
    ], installs


def test_copies_every_package_pyproject_includes() -> None:
    sources = copied_sources()
    if "." in sources:
        return
    for pattern in files.setuptools_includes():
        package = pattern.rstrip("*").rstrip(".")
        assert package in sources, (
            f"Dockerfile: {package}/ is in pyproject's include but not copied"
        )
    assert "pyproject.toml" in sources
    assert files.project_readme() in sources, "Dockerfile: the readme pyproject names is not copied"


def test_every_copied_source_exists() -> None:
    missing = [s for s in copied_sources() if not (files.ROOT / s).exists()]
    assert not missing, (
        f"Dockerfile copies files that do not exist (the build would fail): {missing}"
    )


def ignore_patterns() -> list[str]:
    lines = files.DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern):
            result = not negate
    return result


def test_dockerignore_keeps_secrets_out_and_the_sources_in() -> None:
    patterns = ignore_patterns()
    for path in (".env", ".venv", ".git", "tests", ".tidings"):
        assert ignored(path, patterns), f".dockerignore: {path} would be sent to the build"
    wrongly = [s for s in copied_sources() if ignored(s, patterns)]
    assert not wrongly, f".dockerignore excludes files the Dockerfile copies: {wrongly}"


def test_compose_builds_from_this_dockerfile() -> None:
    for name in files.TIDINGS_SERVICES:
        service = files.services()[name]
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (files.ROOT / context / dockerfile).resolve() == files.DOCKERFILE, name


def test_the_code_run_from_app_has_its_bytecode_compiled() -> None:
    """PYTHONDONTWRITEBYTECODE keeps the process from caching bytecode, so the workflow sandbox
    would compile the workflow modules from source for every run it loads."""
    env = shlex.split(" ".join(instructions("ENV")))
    if "PYTHONDONTWRITEBYTECODE=1" not in env:
        return
    compiled = [shlex.split(a) for a in instructions("RUN") if "compileall" in a]
    assert compiled, "Dockerfile: no compileall while PYTHONDONTWRITEBYTECODE is set"
    packages = {w for words in compiled for w in words}
    assert {"tidings", "workflows", "activities"} <= packages
