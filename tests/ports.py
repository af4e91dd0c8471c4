"""Ports for tests, without a window in which another process can take them (issue 7, defect 11).

Servers the tests own bind port 0 and report the port they got. A test that needs a port where
nothing answers holds it: a socket bound but not listening refuses every connection (the kernel
answers RST) and keeps any other process from binding that port until the test ends. Picking a
free port, closing it and using it later is never safe: a parallel test run can take it between.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on `host` where connections are refused, reserved while the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((host, 0))
        yield int(held.getsockname()[1])


@contextmanager
def busy_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on `host` that another program listens on, while the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((host, 0))
        busy.listen()
        yield int(busy.getsockname()[1])
