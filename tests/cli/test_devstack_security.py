"""`tidings dev` (what `make run` starts) is safe by default too: its HTTP API wants the key it
prints, payloads are encrypted in history, and the Web UI's codec endpoint decodes them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from temporalio.api.history.v1 import History

from starter.client import Tidings
from tests.cli.devstack_support import dev_env_vars, dev_stack, processes_mentioning, settings_from
from workflows.queues import workflow_id

NAME = "Ottoline-Plaintext-4410"


async def test_dev_stack_encrypts_and_serves_an_authenticated_api(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = settings_from(dev_env_vars(data_dir))
    async with dev_stack(settings) as running, httpx.AsyncClient(timeout=10) as http:
        key = (data_dir / "dev-api-key").read_text().strip()
        assert (data_dir / "payload-keys").stat().st_mode & 0o777 == 0o600
        api = f"http://127.0.0.1:{running.dev_api_port}"
        assert running.public_base_url == api  # links in its messages point at its API
        assert (await http.get(f"{api}/v1/stats")).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert (await http.get(f"{api}/v1/stats", headers=auth)).status_code == 200

        # The dev server's Web UI was given the codec endpoint (with a key in its path).
        temporal_db = (data_dir / "temporal.db").resolve()
        assert processes_mentioning(temporal_db)
        cmdline = _cmdline_with(str(temporal_db))
        assert f"--ui-codec-endpoint\x00{api}/codec/{key}" in cmdline

        async with await Tidings.connect(running) as tidings:
            ref = await tidings.notify(
                user_id="user_001",
                template_id="welcome",
                data={"app_name": "MyApp", "user_name": NAME},
                channels=["in_app"],
            )
            await tidings.wait_sent(ref.notification_id)
            handle = tidings.temporal.get_workflow_handle(workflow_id(ref.notification_id))
            history = await handle.fetch_history()
        raw = History(events=history.events).SerializeToString()
        assert NAME.encode() not in raw

        # What the Web UI posts for the run's input, from its own origin.
        started = history.events[0].workflow_execution_started_event_attributes
        body = {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                    "data": base64.b64encode(p.data).decode(),
                }
                for p in started.input.payloads
            ]
        }
        origin = f"http://localhost:{running.dev_ui_port}"
        r = await http.post(
            f"{api}/codec/{key}/decode",
            json=body,
            headers={"Origin": origin, "X-Namespace": running.temporal_namespace},
        )
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == origin
        decoded = json.loads(base64.b64decode(r.json()["payloads"][0]["data"]))
        assert decoded["request"]["data"]["user_name"] == NAME


def _cmdline_with(needle: str) -> str:
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and "start-dev" in cmdline:
            return cmdline
    raise AssertionError(f"no dev server process with {needle}")
