"""Configuration from TIDINGS_* environment variables (and an optional .env file).

Build one `Settings()` at process start and pass it down; nothing reads the environment at import.
The defaults describe the embedded stack that `make run` starts on one machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tidings.frequency import CapPolicy
from tidings.models import Channel
from tidings.payload_keys import parse_keys
from tidings.targets import TargetPolicy

DEV_WEBHOOK_SECRET = "whsec_dGlkaW5ncy1kZXZlbG9wbWVudC1zZWNyZXQtb25seQ=="
DEV_RECEIPT_SECRET = "whsec_dGlkaW5ncy1kZXZlbG9wbWVudC1yZWNlaXB0cy1vbmx5"
DEV_TRACKING_SECRET = "tidings-development-tracking-secret-only"
DEV_INBOX_SECRET = "tidings-development-inbox-secret-only"
# Written by `tidings dev` under data_dir; read by clients in development when no keys are set.
DEV_PAYLOAD_KEY_FILE = "payload-keys"


class SmtpRelay(BaseModel):
    host: str
    port: int = 587
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    use_tls: bool = False


class TwilioAccount(BaseModel):
    """A further Twilio account (or sub-account) for SMS failover."""

    account_sid: str
    auth_token: SecretStr
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str | None = None  # None: the same TIDINGS_TWILIO_BASE_URL


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TIDINGS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: str = Field(default="development", pattern="^(development|test|production)$")
    data_dir: Path = Path(".tidings")

    # Database: SQLite file under data_dir unless a URL is given (postgresql+asyncpg://...).
    database_url: str | None = None

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_api_key: SecretStr | None = None
    temporal_tls_client_cert: Path | None = None
    temporal_tls_client_key: Path | None = None
    temporal_ui_url: str = "http://localhost:8233"
    task_queue: str = "tidings"

    # The embedded stack (`tidings dev`): where it listens. temporal_address above stays what
    # clients dial; point it at dev_temporal_port when you move the dev server. Port 0 means any
    # free port: the stack prints (and its `running` callback gets) the ports it bound.
    dev_temporal_port: int = Field(default=7233, ge=0, le=65535)
    dev_ui_port: int = Field(default=8233, ge=0, le=65535)
    dev_webhook_port: int = Field(default=8026, ge=0, le=65535)
    # The HTTP API (and the Web UI's codec endpoint) that the stack serves.
    dev_api_port: int = Field(default=8000, ge=0, le=65535)
    # Its provider emulators (starter.dev.emulators), matching the *_base_url defaults below. The
    # dev stack points its own worker at them; other processes keep the base URLs they are given.
    dev_fcm_port: int = Field(default=8031, ge=0, le=65535)
    dev_apns_port: int = Field(default=8032, ge=0, le=65535)
    dev_twilio_port: int = Field(default=8033, ge=0, le=65535)
    dev_slack_port: int = Field(default=8034, ge=0, le=65535)

    # Email (SMTP)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_timeout_seconds: float = 10.0
    # Connection reuse, per relay (tidings/channels/smtp_pool.py): at most smtp_pool_max_idle idle
    # connections kept; one idle for smtp_pool_idle_seconds or longer is closed rather than reused
    # (servers drop idle clients); at most smtp_pool_max_messages messages on one connection
    # (providers cap it). Any of the three at 0: a new connection for every message.
    smtp_pool_max_idle: int = Field(default=4, ge=0)
    smtp_pool_idle_seconds: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    smtp_pool_max_messages: int = Field(default=100, ge=0)
    # Failover: further SMTP relays tried in order when the one above fails transiently.
    # JSON in the environment: '[{"host": "smtp2.example.com", "port": 587, "starttls": true}]'.
    smtp_fallback_relays: list[SmtpRelay] = Field(default_factory=list)
    email_from: str = "Tidings <noreply@tidings.localhost>"
    message_id_domain: str = "tidings.localhost"

    # Webhooks (Standard Webhooks signing secret, "whsec_" + base64)
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    webhook_timeout_seconds: float = 10.0
    # Webhook and Slack incoming-webhook targets must be https:// to public addresses; these
    # networks (CIDR) and host names are allowed too, over http:// as well. Comma-separated or
    # JSON: "127.0.0.0/8,::1" (what `tidings dev` adds), "10.20.0.0/16,hooks.internal".
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Push, SMS and Slack providers. Base URLs default to the local emulators
    # (starter.dev.emulators); production points them at the real hosts. A sender is built only
    # when its credentials are.
    fcm_base_url: str = "http://127.0.0.1:8031"  # production: https://fcm.googleapis.com
    fcm_token_url: str | None = None  # overrides the key's token_uri (the emulator's /token)
    fcm_project_id: str | None = None  # None: the service-account key's project_id
    fcm_service_account_file: Path | None = None
    fcm_service_account_json: SecretStr | None = None  # the key's JSON content, instead of a file
    fcm_timeout_seconds: float = Field(default=10.0, gt=0)
    apns_base_url: str = "http://127.0.0.1:8032"  # production: https://api.push.apple.com
    apns_key_file: Path | None = None  # the .p8 signing key
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None  # the app's bundle id
    apns_timeout_seconds: float = Field(default=10.0, gt=0)
    twilio_base_url: str = "http://127.0.0.1:8033"  # production: https://api.twilio.com
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None  # used instead of From when set
    twilio_timeout_seconds: float = Field(default=10.0, gt=0)
    # Failover: further accounts tried in order when the one above fails transiently. JSON:
    # '[{"account_sid": "AC...", "auth_token": "...", "from_number": "+1..."}]'.
    twilio_fallback_accounts: list[TwilioAccount] = Field(default_factory=list)
    sms_max_segments: int = Field(default=4, ge=1, le=20)
    # Where providers reach us (delivery receipts): Twilio's StatusCallback is built from it.
    public_base_url: str | None = None
    slack_base_url: str = "http://127.0.0.1:8034"  # production: https://slack.com
    slack_bot_token: SecretStr | None = None
    slack_timeout_seconds: float = Field(default=10.0, gt=0)
    # Hosts a user's Slack incoming-webhook URL may point at; loopback is also accepted outside
    # production so the emulator works without configuration.
    slack_webhook_hosts: list[str] = Field(default_factory=lambda: ["hooks.slack.com"])

    # Signs delivery receipts posted to /v1/receipts (Standard Webhooks, "whsec_" + base64)
    receipt_secret: SecretStr = SecretStr(DEV_RECEIPT_SECRET)

    # Tracking links (/t/<token>): HMAC key that signs notification id, event and target URL
    tracking_secret: SecretStr = SecretStr(DEV_TRACKING_SECRET)
    # Tracking links expire this long after the engagement window (for messages opened late).
    tracking_grace_hours: float = Field(default=168.0, ge=0, le=24 * 366)

    # Inbox tokens (browsers reading one user's inbox): HMAC key that signs user id and expiry
    inbox_secret: SecretStr = SecretStr(DEV_INBOX_SECRET)

    # Payload encryption (workflows.codec): "id:base64key[,id:base64key...]", 32-byte AES keys;
    # the first encrypts, all decrypt (rotation). Required in production; `tidings dev` makes one.
    payload_keys: SecretStr | None = None
    # Origins allowed to call the codec endpoint from a browser (the Temporal Web UI); empty:
    # temporal_ui_url's origin.
    codec_cors_origins: list[str] = Field(default_factory=list)

    # Worker slots per task queue. Small bounds keep excess work waiting in Temporal's queues,
    # where the -urgent queues overtake it, instead of inside one process where every queue
    # shares the event loop and the database pool (bench: a CRITICAL notification behind 5,000
    # LOW ones took 18.3 s with the SDK's 100 slots, 1.1 s with 10).
    worker_max_concurrent_activities: int = Field(default=10, ge=1)
    worker_max_concurrent_local_activities: int = Field(default=10, ge=1)
    # Workflow tasks in progress per Worker (the SDK's default is 100). A task whose run waits
    # for a local activity stays open until it ends: with more tasks than local activity slots,
    # the rest of those tasks wait inside the process and pass 5 s under load (the SDK warns,
    # TMPRL1104). At the same bound they wait in Temporal's queue instead.
    worker_max_concurrent_workflow_tasks: int = Field(default=10, ge=2)
    # Runs kept in each workflow Worker's sticky cache (the SDK's default is 1,000). A run that
    # is not cached replays its history when an engagement event or its window's end arrives;
    # `bench/open_runs.py` prints the memory per cached run and the cost of a replay.
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    # Run the worker and the CLI (`tidings dev` included) on uvloop where it is installed
    # (tidings/eventloop.py); false keeps asyncio's own loop.
    uvloop: bool = True

    # Behaviour
    # Deliveries per second per channel, enforced by the Temporal server on each channel's task
    # queue across all workers (a provider's throughput cap). JSON: '{"sms": 10, "push": 500}'.
    # Not in_app: it has no provider, and its single sends use no channel queue.
    channel_rate_limits: dict[Channel, float] = Field(default_factory=dict)
    engagement_window_hours: float = 72.0
    # A bulk with more recipients to start than this is accepted durably (one transaction, then
    # one fan-out workflow starts the runs: README "Bulk"); up to it, the runs start inline.
    bulk_inline_max: int = Field(default=100, ge=0)
    # Cross-channel read sync: an `opened` event on any channel marks the in-app inbox item
    # read, and reading the inbox item records `opened` for its notification.
    read_sync: bool = True
    # Inbox stream (GET /v1/users/{id}/inbox/stream): a comment line this often keeps proxies
    # from closing an idle stream.
    inbox_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    # At most N non-critical notifications per user per hour in a template category; "*" covers
    # categories without their own entry. JSON in the environment: '{"marketing": 3, "*": 20}'.
    frequency_caps: dict[str, int] = Field(default_factory=dict)
    frequency_cap_policy: CapPolicy = CapPolicy.DEFER

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        TargetPolicy.from_entries(value)  # ValueError naming the bad entry
        return value

    @field_validator("channel_rate_limits")
    @classmethod
    def _no_in_app_rate_limit(cls, value: dict[Channel, float]) -> dict[Channel, float]:
        # Single in-app sends run as local activities on the workflow's worker, off any task
        # queue the server could rate-limit: a limit here would hold back broadcasts only.
        if Channel.IN_APP in value:
            raise ValueError(
                "channel_rate_limits: in_app cannot be rate limited; in_app writes Tidings' own"
                " database, there is no provider to protect"
            )
        return value

    @field_validator("payload_keys")
    @classmethod
    def _valid_payload_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keys(value.get_secret_value())  # PayloadKeyError (a ValueError) says what
        return value

    @property
    def webhook_target_policy(self) -> TargetPolicy:
        return TargetPolicy.from_entries(self.webhook_allowed_networks)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tidings.db').resolve()}"

    @model_validator(mode="after")
    def _cache_holds_the_tasks_in_progress(self) -> Settings:
        # A run with a workflow task in progress must stay cached: a smaller cache than the
        # task slots makes the worker evict and replay runs mid-task (or stall).
        cached, tasks = self.worker_max_cached_workflows, self.worker_max_concurrent_workflow_tasks
        if 0 < cached < tasks:
            raise ValueError(
                f"worker_max_cached_workflows: {cached} is below"
                f" worker_max_concurrent_workflow_tasks ({tasks}); use at least {tasks}, or 0"
                " for no cache"
            )
        return self

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
                raise ValueError("TIDINGS_WEBHOOK_SECRET must be set in production")
            if self.tracking_secret.get_secret_value() == DEV_TRACKING_SECRET:
                raise ValueError("TIDINGS_TRACKING_SECRET must be set in production")
            if self.receipt_secret.get_secret_value() == DEV_RECEIPT_SECRET:
                raise ValueError("TIDINGS_RECEIPT_SECRET must be set in production")
            if self.inbox_secret.get_secret_value() == DEV_INBOX_SECRET:
                raise ValueError("TIDINGS_INBOX_SECRET must be set in production")
            if self.payload_keys is None:
                raise ValueError(
                    "TIDINGS_PAYLOAD_KEYS must be set in production (personal data in workflow"
                    ' history is encrypted); make one with: python -c "import base64, os;'
                    " print('k1:' + base64.b64encode(os.urandom(32)).decode())\""
                )
        return self

    @model_validator(mode="after")
    def _providers_use_https_in_production(self) -> Settings:
        # A configured provider left on its emulator default would fail every send, slowly.
        if self.environment != "production":
            return self
        configured = {
            "TIDINGS_FCM_BASE_URL": (
                self.fcm_base_url,
                self.fcm_service_account_file or self.fcm_service_account_json,
            ),
            "TIDINGS_APNS_BASE_URL": (self.apns_base_url, self.apns_key_file),
            "TIDINGS_TWILIO_BASE_URL": (self.twilio_base_url, self.twilio_account_sid),
            "TIDINGS_SLACK_BASE_URL": (self.slack_base_url, self.slack_bot_token),
        }
        for name, (url, credentials) in configured.items():
            if credentials and not url.startswith("https://"):
                raise ValueError(f"{name} must be an https:// URL in production, not {url!r}")
        return self
