"""The one way to connect to Temporal: the client, the CLI, the HTTP API, the worker, the dev
stack and the benchmarks all share the same address, TLS, API key and data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import TLSConfig

from tidings.settings import Settings
from workflows.converter import data_converter


def tls_config(settings: Settings) -> TLSConfig | bool:
    if settings.temporal_tls_client_cert and settings.temporal_tls_client_key:
        return TLSConfig(
            client_cert=settings.temporal_tls_client_cert.read_bytes(),
            client_private_key=settings.temporal_tls_client_key.read_bytes(),
        )
    # An API key (Temporal Cloud) implies TLS.
    return settings.temporal_tls or settings.temporal_api_key is not None


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """`lazy` connects on first use (a health check that must answer while Temporal is down)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings),
        data_converter=data_converter(settings),
        lazy=lazy,
    )
