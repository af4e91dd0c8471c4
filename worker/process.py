"""Process-wide preparation of a worker, paid once at start instead of on every run.

Measured with py-spy on `bench/throughput.py --quick --no-faults --throughput-only --count 200`
(README, "Where a notification's worker CPU goes"):

- The sandbox re-imports each workflow module for every run it loads. Where the interpreter does
  not write bytecode (PYTHONDONTWRITEBYTECODE=1, as on the development machines), every one of
  those imports compiled workflows/notification.py from source: 7% of the process's CPU. The
  workflow modules are compiled once here, so the sandbox reads the bytecode. The Docker image
  compiles at build time; a read-only tree simply keeps compiling as before.
- The cyclic garbage collector walked every object the process had imported (about 190,000:
  temporalio, SQLAlchemy, pydantic) each time it collected the oldest generation, and the SDK's
  and the sandbox's allocations trigger collections often: 6% of the CPU. Objects alive once the
  worker is built are moved out of its reach (`gc.freeze`), and the youngest generation is
  collected less often, so short-lived garbage of a run is swept in fewer passes.
"""

from __future__ import annotations

import compileall
import gc
import sys
from pathlib import Path
from types import ModuleType

# The youngest generation's threshold: the default (700 allocations) collects several times per
# workflow activation. Reference counting frees almost everything a run allocates; the cycle
# collector is only for cycles, and 10,000 keeps its pauses short (well under a millisecond).
GEN0_THRESHOLD = 10_000


def precompile(*packages: ModuleType) -> None:
    """Write the bytecode of `packages` (their modules are the ones the sandbox re-imports)."""
    if not sys.dont_write_bytecode:
        return  # the first import writes it
    for package in packages:
        for location in getattr(package, "__path__", []):
            compileall.compile_dir(Path(location), quiet=2)


def settle_heap() -> None:
    """Call once everything long-lived exists (imports, clients, workers)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GEN0_THRESHOLD, gc.get_threshold()[0]), gen1, gen2)
