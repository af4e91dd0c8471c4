"""Configuration from TIDINGS_* environment variables (and an optional .env file).

Build one `Settings()` at process start and pass it down; nothing reads the environment at import.
The defaults describe the embedded stack that `make run` starts on one machine.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_WEBHOOK_SECRET = "whsec_dGlkaW5ncy1kZXZlbG9wbWVudC1zZWNyZXQtb25seQ=="


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

    # Email (SMTP)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_timeout_seconds: float = 10.0
    email_from: str = "Tidings <noreply@tidings.localhost>"
    message_id_domain: str = "tidings.localhost"

    # Webhooks (Standard Webhooks signing secret, "whsec_" + base64)
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    webhook_timeout_seconds: float = 10.0
    webhook_allow_private: bool = True

    # Behaviour
    engagement_window_hours: float = 72.0

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tidings.db').resolve()}"

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
                raise ValueError("TIDINGS_WEBHOOK_SECRET must be set in production")
            if self.webhook_allow_private:
                raise ValueError(
                    "TIDINGS_WEBHOOK_ALLOW_PRIVATE must be false in production"
                    " (webhook targets in private ranges are a server-side request forgery risk)"
                )
        return self
