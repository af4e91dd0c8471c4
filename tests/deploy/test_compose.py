"""docker-compose.yml is consistent with itself and with the code: every reference names something
that exists, the addresses point where the services listen, and the environment it gives Tidings
is one that `Settings` accepts in production."""

from __future__ import annotations

import graphlib
import itertools
import os
import re
import shlex
from collections import Counter
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.deploy import files
from tidings.settings import DEV_WEBHOOK_SECRET, Settings
from worker.main import GRACEFUL_SHUTDOWN
from workflows.search_attributes import ALL

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
PREFIX = str(Settings.model_config.get("env_prefix", ""))


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # the short form means "started"
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_depends_on_names_defined_services_with_valid_conditions() -> None:
    services = files.services()
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        deps = depends_on(service)
        graph[name] = set(deps)
        for target, condition in deps.items():
            where = f"services.{name}.depends_on.{target}"
            assert target in services, f"{where}: no service named {target!r}"
            assert target != name, f"{where}: a service cannot wait for itself"
            assert condition in CONDITIONS, f"{where}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{where}: {target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", (
                    f'{where}: {target} must be a one-shot step (restart: "no")'
                )
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a cycle


@pytest.mark.parametrize("service_name", files.TIDINGS_SERVICES)
def test_tidings_services_reach_temporal_and_wait_for_its_set_up(service_name: str) -> None:
    services = files.services()
    env = files.environment(services[service_name], files.filled_env())
    host, _, port = env["TIDINGS_TEMPORAL_ADDRESS"].rpartition(":")
    assert host == "temporal" and host in services
    assert int(port) == 7233 and 7233 in files.container_ports(services["temporal"])
    deps = depends_on(services[service_name])
    assert deps.get("temporal-admin-tools") == "service_completed_successfully", (
        f"services.{service_name}: must start only after the search attributes are registered"
    )
    assert deps.get("postgresql") == "service_healthy"


def test_temporal_clients_in_compose_use_the_same_address() -> None:
    services = files.services()
    worker = files.environment(services["worker"], files.filled_env())
    for name in ("temporal-admin-tools", "temporal-ui"):
        env = files.raw_environment(services[name])
        assert env["TEMPORAL_ADDRESS"] == worker["TIDINGS_TEMPORAL_ADDRESS"], name


@pytest.mark.parametrize("service_name", files.TIDINGS_SERVICES)
def test_database_url_points_at_the_tidings_database(service_name: str) -> None:
    services = files.services()
    sample = files.filled_env()
    env = files.environment(services[service_name], sample)
    postgres = files.environment(services["postgresql"], sample)
    url = make_url(env["TIDINGS_DATABASE_URL"])
    assert url.drivername == "postgresql+asyncpg"
    assert url.host == "postgresql" and url.host in services
    assert url.port == 5432  # the postgres image's port; the service publishes none
    assert url.username == postgres["POSTGRES_TIDINGS_USER"]
    assert url.password == postgres["POSTGRES_TIDINGS_PASSWORD"]
    assert url.password == sample["POSTGRES_TIDINGS_PASSWORD"]
    assert url.database == postgres["POSTGRES_TIDINGS_DB"]


def test_temporal_server_persists_in_the_postgresql_service() -> None:
    services = files.services()
    temporal = services["temporal"]
    assert re.fullmatch(r"temporalio/auto-setup:1\.2\d\.\d+", temporal["image"])
    sample = files.filled_env()
    env = files.environment(temporal, sample)
    postgres = files.environment(services["postgresql"], sample)
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql" and "postgresql" in services
    assert env["DB_PORT"] == "5432"
    assert env["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == postgres["POSTGRES_PASSWORD"]
    assert depends_on(temporal)["postgresql"] == "service_healthy"


def registered_search_attributes(command: str) -> tuple[str, dict[str, str]]:
    """(namespace, {name: type}) from the `temporal operator search-attribute create` call."""
    words = shlex.split(command.replace("\\\n", " "), comments=True)
    calls = [
        i
        for i in range(len(words))
        if words[i : i + 4] == ["temporal", "operator", "search-attribute", "create"]
    ]
    assert len(calls) == 1, f"expected one search-attribute create call, found {len(calls)}"
    args = words[calls[0] + 4 :]
    namespace, names, types = "", [], []
    for flag, value in itertools.pairwise(args):
        if flag == "--namespace":
            namespace = value
        elif flag == "--name":
            names.append(value)
        elif flag == "--type":
            types.append(value)
    assert len(names) == len(types), f"--name/--type do not pair up: {names} {types}"
    assert len(set(names)) == len(names), f"a search attribute is registered twice: {names}"
    return namespace, dict(zip(names, types, strict=True))


def cli_type(indexed_value_type: Any) -> str:
    # KEYWORD_LIST -> KeywordList, the spelling `temporal operator search-attribute create` takes.
    return "".join(part.capitalize() for part in indexed_value_type.name.split("_"))


def test_admin_tools_registers_exactly_the_search_attributes() -> None:
    services = files.services()
    admin = services["temporal-admin-tools"]
    assert admin.get("restart") == "no"
    command = admin["command"]
    script = command[-1] if isinstance(command, list) else command
    namespace, registered = registered_search_attributes(script)
    assert registered == {key.name: cli_type(key.indexed_value_type) for key in ALL}
    worker = files.environment(services["worker"], files.filled_env())
    assert namespace == worker["TIDINGS_TEMPORAL_NAMESPACE"]


def test_every_tidings_variable_is_a_settings_field() -> None:
    fields = {PREFIX + name.upper() for name in Settings.model_fields}
    seen: dict[str, str] = {}
    for name, service in files.services().items():
        seen.update({k: f"services.{name}" for k in files.raw_environment(service)})
    # The .env file is read by compose and, in the working directory, by Settings too.
    seen.update({k: ".env.example" for k in files.env_example()})
    unknown = {k: where for k, where in seen.items() if k.startswith(PREFIX) and k not in fields}
    assert not unknown, f"not fields of tidings.settings.Settings: {unknown}"


@pytest.mark.parametrize("service_name", files.TIDINGS_SERVICES)
def test_compose_environment_is_valid_production_settings(
    service_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = files.environment(files.services()[service_name], files.filled_env())
    for key in list(os.environ):
        if key.startswith(PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.environment == "production"
    assert settings.webhook_allowed_networks == []
    assert settings.webhook_secret.get_secret_value() != DEV_WEBHOOK_SECRET
    assert settings.temporal_address == "temporal:7233"
    assert settings.resolved_database_url.startswith("postgresql+asyncpg://")


def test_every_interpolated_variable_is_listed_in_env_example() -> None:
    example = files.env_example()
    refs = [r for s in files.all_strings(files.load_compose()) for r in files.references(s)]
    missing = sorted({r.name for r in refs} - set(example))
    assert not missing, f".env.example does not list {missing}"
    # Required values are empty in the example, so a copied-but-unedited .env cannot start.
    required = {r.name for r in refs if r.required}
    assert required == {k for k, v in example.items() if not v}
    with pytest.raises(files.MissingVariableError):
        for s in files.all_strings(files.load_compose()):
            files.interpolate(s, example)


def test_published_host_ports_do_not_collide() -> None:
    services = files.services()
    host_ports = [
        (port, name) for name, s in services.items() for port, _ in files.published(s) if port
    ]
    counts = Counter(port for port, _ in host_ports)
    clashes = {port: [n for p, n in host_ports if p == port] for port, c in counts.items() if c > 1}
    assert not clashes, f"host ports published twice: {clashes}"
    for name, service in services.items():
        replicas = (service.get("deploy") or {}).get("replicas", 1)
        fixed = [p for p, _ in files.published(service) if p]
        assert replicas == 1 or not fixed, (
            f"services.{name}: {replicas} replicas cannot share {fixed}"
        )


def test_worker_is_replicated_and_stops_gracefully() -> None:
    worker = files.services()["worker"]
    assert worker["deploy"]["replicas"] >= 2
    grace = files.parse_duration(worker.get("stop_grace_period", "10s"))
    assert grace > GRACEFUL_SHUTDOWN, (
        f"services.worker.stop_grace_period {grace} does not cover the worker's {GRACEFUL_SHUTDOWN}"
    )


def test_api_publishes_the_port_uvicorn_listens_on() -> None:
    api = files.services()["api"]
    command = api["command"]
    assert command[:2] == ["uvicorn", "starter.http:app"]
    port = int(command[command.index("--port") + 1])
    assert port in files.container_ports(api)


def test_volumes_and_init_scripts_are_mounted() -> None:
    compose = files.load_compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for mount in service.get("volumes") or []:
            source = str(mount).split(":")[0]
            if source.startswith((".", "/")):
                assert (files.ROOT / source).exists(), f"services.{name}: {source} does not exist"
            else:
                assert source in declared, f"services.{name}: volume {source!r} is not declared"
    mounts = [str(m) for m in compose["services"]["postgresql"]["volumes"]]
    assert any(
        m.split(":")[1] == "/var/lib/postgresql/data" and m.split(":")[0] in declared
        for m in mounts
    )
    init = [m.split(":")[0] for m in mounts if m.split(":")[1] == "/docker-entrypoint-initdb.d"]
    assert init and any((files.ROOT / init[0]).glob("*.sh"))


def test_pulled_images_are_pinned() -> None:
    for name, service in files.services().items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest", f"services.{name}: pin {image!r} to a version"
