"""worker.process: what a worker pays once at start instead of per run."""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from worker.process import GEN0_THRESHOLD, precompile, settle_heap


def _package(root: Path) -> ModuleType:
    pkg = root / "pkg_for_precompile"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "wf.py").write_text("X = 1\n")
    module = ModuleType("pkg_for_precompile")
    module.__path__ = [str(pkg)]
    return module


def test_precompile_writes_bytecode_when_the_interpreter_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    precompile(package)
    cached = Path(importlib.util.cache_from_source(str(tmp_path / "pkg_for_precompile/wf.py")))
    assert cached.exists()


def test_precompile_leaves_it_to_imports_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    precompile(package)
    cached = Path(importlib.util.cache_from_source(str(tmp_path / "pkg_for_precompile/wf.py")))
    assert not cached.exists()


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_heap_freezes_what_exists_and_collects_the_young_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
