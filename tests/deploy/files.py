"""Readers for the deployment files (docker-compose.yml, .env.example, Dockerfile, .dockerignore)
that the deploy tests share. No Docker engine is needed: the files are parsed, and compose's
`${VAR...}` interpolation is reproduced here for the forms the project uses."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

# The services that run the Tidings image.
TIDINGS_SERVICES = ("worker", "api")

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message or 'required variable is missing'}")
        self.name = name


@dataclass(frozen=True)
class Reference:
    name: str
    op: str  # "", "-", ":-", "?", ":?", "+", ":+"
    arg: str

    @property
    def required(self) -> bool:
        return self.op in ("?", ":?")

    @property
    def has_default(self) -> bool:
        return self.op in ("-", ":-")


def references(value: str) -> Iterator[Reference]:
    for m in _REFERENCE.finditer(value):
        if m["escaped"]:
            continue
        if m["bare"]:
            yield Reference(m["bare"], "", "")
        else:
            yield Reference(m["braced"], m["op"] or "", m["arg"] or "")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Resolve a compose value the way `docker compose` does with `env` as the .env file."""

    def resolve(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["bare"] or m["braced"]
        op, arg = m["op"] or "", m["arg"] or ""
        current = env.get(name)
        unset_or_empty = not current
        missing = unset_or_empty if op.startswith(":") else current is None
        if op in ("-", ":-"):
            return arg if missing else str(current)
        if op in ("?", ":?"):
            if missing:
                raise MissingVariableError(name, arg)
            return str(current)
        if op in ("+", ":+"):
            return "" if missing else arg
        return current or ""

    return _REFERENCE.sub(resolve, value)


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml: top level must be a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    found = load_compose().get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml: no services"
    return found


def raw_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment before interpolation, whether written as a map or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else _scalar(v) for k, v in env.items()}


def environment(service: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    return {k: interpolate(v, env) for k, v in raw_environment(service).items()}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def all_strings(node: Any) -> Iterator[str]:
    """Every string in the compose file, where interpolation applies."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from all_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_strings(v)


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for lineno, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example line {lineno}: expected KEY=VALUE, got {line!r}"
        values[key.strip()] = value.strip().strip("\"'")
    return values


SAMPLE_VALUES = {
    "TIDINGS_SMTP_HOST": "smtp.example.com",
    "TIDINGS_EMAIL_FROM": "Tidings <noreply@example.com>",
    "TIDINGS_MESSAGE_ID_DOMAIN": "example.com",
    "TIDINGS_WEBHOOK_SECRET": "whsec_c2FtcGxlLXNlY3JldC1mb3ItdGhlLWRlcGxveS10ZXN0cw==",
    "TIDINGS_RECEIPT_SECRET": "whsec_c2FtcGxlLXJlY2VpcHQtc2VjcmV0LWZvci10ZXN0cw==",
    "TIDINGS_PAYLOAD_KEYS": "k1:dGlkaW5ncy10ZXN0LXBheWxvYWQta2V5LTMyLWJ5dGU=",
}


def filled_env() -> dict[str, str]:
    """.env.example as an operator would fill it in."""
    env = env_example()
    for key, value in env.items():
        if not value:
            env[key] = SAMPLE_VALUES.get(key, f"sample-{key.lower().replace('_', '-')}")
    return env


def container_ports(service: Mapping[str, Any]) -> list[int]:
    return [container for _, container in published(service)]


def published(service: Mapping[str, Any]) -> list[tuple[int | None, int]]:
    """(host port or None, container port) for each entry under `ports`."""
    result: list[tuple[int | None, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            host = entry.get("published")
            result.append((int(host) if host is not None else None, int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        container = int(parts[-1])
        host_part = parts[-2] if len(parts) >= 2 else ""
        result.append((int(host_part) if host_part else None, container))
    return result


def parse_duration(text: str) -> timedelta:
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    assert parts and any(parts.groups()), f"not a compose duration: {text!r}"
    h, m, s = (int(g or 0) for g in parts.groups())
    return timedelta(hours=h, minutes=m, seconds=s)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def setuptools_includes() -> list[str]:
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    includes = data["tool"]["setuptools"]["packages"]["find"]["include"]
    assert isinstance(includes, list)
    return [str(i) for i in includes]


def project_readme() -> str:
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    readme = data["project"]["readme"]
    return str(readme if isinstance(readme, str) else readme["file"])
