"""All settings of every component, in one place.

Every value comes from the environment (prefix ``LEDGER_``) or from a ``.env`` file; secrets are
``SecretStr`` so they never print. The two servers every component needs also answer to the
names Kafka and Schema Registry users already know: ``KAFKA_BOOTSTRAP_SERVERS`` and
``SCHEMA_REGISTRY_URL`` (set them and everything uses that cluster instead of the local stack).

A secret may also be given as a file: ``LEDGER_<NAME>_FILE=/path`` (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PREFIX = "LEDGER_"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _file_secrets(prefix: str) -> dict[str, str]:
    """Read ``<PREFIX><NAME>_FILE`` variables: the value is the content of that file."""
    out: dict[str, str] = {}
    for key, path in os.environ.items():
        if key.startswith(prefix) and key.endswith("_FILE") and path:
            name = key[len(prefix) : -len("_FILE")].lower()
            out[name] = Path(path).read_text().strip()
    return out


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="ignore", populate_by_name=True
    )

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in _file_secrets(PREFIX).items():
                if name in cls.model_fields:
                    data.setdefault(name, value)
        return data


class KafkaSettings(_Base):
    """Kafka client settings; the security ones pass through to every client unchanged."""

    kafka_bootstrap_servers: str = Field(
        default_factory=lambda: f"127.0.0.1:{StackSettings().kafka_port}",
        validation_alias=AliasChoices("LEDGER_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    schema_registry_url: str = Field(
        default_factory=lambda: f"http://127.0.0.1:{StackSettings().registry_port}/apis/ccompat/v7",
        validation_alias=AliasChoices("LEDGER_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"),
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        None, description="user:password for the registry, if it needs one"
    )
    topic_prefix: str = Field("", description="prefix of every topic name (isolates tests/tenants)")
    topic_partitions: int = 3
    topic_replication_factor: int = 1

    def client_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) configuration shared by producers, consumers, admin."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = self.kafka_ssl_ca_location
        return conf

    def registry_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth.get_secret_value()
        return conf

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class StripeSettings(_Base):
    stripe_api_key: SecretStr = SecretStr("sk_test_123")
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="point at stripe-mock or the test double locally"
    )
    stripe_api_version: str = Field("2025-03-31.basil", description="pinned Stripe-Version")
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="endpoint signing secrets, JSON list or comma-separated (several: rotation)",
    )
    stripe_webhook_tolerance_s: int = 300

    @model_validator(mode="before")
    @classmethod
    def _split_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            raw = data.get("stripe_webhook_secrets")
            if isinstance(raw, str):
                if raw.lstrip().startswith("["):
                    data["stripe_webhook_secrets"] = json.loads(raw)
                else:
                    data["stripe_webhook_secrets"] = [
                        s.strip() for s in raw.split(",") if s.strip()
                    ]
        return data


class NetSuiteSettings(_Base):
    netsuite_account_id: str = Field("", description="account id as written, e.g. 123456_SB1")
    netsuite_base_url: str | None = Field(
        None, description="REST root; default https://<account>.suitetalk.api.netsuite.com"
    )
    netsuite_consumer_key: SecretStr | None = None
    netsuite_consumer_secret: SecretStr | None = None
    netsuite_token_id: SecretStr | None = None
    netsuite_token_secret: SecretStr | None = None
    netsuite_timeout_s: float = 60.0
    netsuite_concurrency: int = 5

    def rest_root(self) -> str:
        if self.netsuite_base_url:
            return self.netsuite_base_url.rstrip("/")
        host = self.netsuite_account_id.lower().replace("_", "-")
        return f"https://{host}.suitetalk.api.netsuite.com"

    def require_credentials(self) -> None:
        missing = [
            name
            for name in (
                "netsuite_account_id",
                "netsuite_consumer_key",
                "netsuite_consumer_secret",
                "netsuite_token_id",
                "netsuite_token_secret",
            )
            if not getattr(self, name)
        ]
        if missing:
            names = ", ".join(PREFIX + m.upper() for m in missing)
            raise SystemExit(f"missing NetSuite settings: {names}")


class StackSettings(_Base):
    """Where the embedded local stack keeps its downloads and its running state."""

    stack_cache_dir: Path = (
        Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "ledgerstream"
    )
    stack_state_dir: Path = PROJECT_ROOT / ".stack"
    kafka_version: str = "4.3.1"
    apicurio_version: str = "3.3.3"
    stripe_mock_version: str = "v0.197.0"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    registry_port: int = 8081
    registry_management_port: int = 8082
    stripe_mock_port: int = 12111
    stripe_mock_https_port: int = 12112


@lru_cache
def kafka() -> KafkaSettings:
    return KafkaSettings()


@lru_cache
def stripe() -> StripeSettings:
    return StripeSettings()


@lru_cache
def netsuite() -> NetSuiteSettings:
    return NetSuiteSettings()


@lru_cache
def stack() -> StackSettings:
    return StackSettings()
