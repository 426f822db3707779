"""All settings of every component, in one place.

Every value comes from the environment (prefix ``LEDGER_``) or from a ``.env`` file; secrets are
``SecretStr`` so they never print. The two servers every component needs also answer to the
names Kafka and Schema Registry users already know: ``KAFKA_BOOTSTRAP_SERVERS`` and
``SCHEMA_REGISTRY_URL`` (set them and everything uses that cluster instead of the local stack).

A secret may also be given as a file: ``LEDGER_<NAME>_FILE=/path`` (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import json
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import platformdirs
from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

PREFIX = "LEDGER_"
# Where files go by default: the user's XDG directories (platformdirs), never the checkout or
# the installed package. Each has a setting of its own.
APP = "ledgerstream"
_S = TypeVar("_S", bound="_Base")

_LOCAL_CURRENCIES = [
    "USD",
    "GBP",
    "CAD",
    "EUR",
    "JPY",
    "KWD",
    "BHD",
    "CHF",
    "AUD",
    "SEK",
    "KRW",
    "ISK",
]
# Named sets of values for settings that have no default. ``local`` is the local stack: the
# set-up records the NetSuite emulator seeds (``testing/netsuite_emulator/store.py``) and
# stripe-mock's key; the demo, the tests and the benchmarks run with LEDGER_PROFILE=local.
PROFILES: dict[str, dict[str, Any]] = {
    "local": {
        "netsuite_subsidiary_id": "1",
        "netsuite_base_currency": "USD",
        "netsuite_currency_ids": {code: str(11 + i) for i, code in enumerate(_LOCAL_CURRENCIES)},
        "netsuite_undeposited_funds_account_id": "101",
        "netsuite_bank_account_ids": {"USD": "102", "EUR": "103"},
        "netsuite_fee_account_ids": {"default": "104"},
        "netsuite_other_income_account_id": "106",
        "netsuite_fx_account_id": "105",
        "netsuite_suspense_account_id": "105",
        "netsuite_payment_method_id": "201",
        "netsuite_global_item_id": "301",
        "netsuite_discount_item_id": "302",
        "netsuite_tax_item_id": "301",
        "netsuite_shipping_item_id": "301",
        "netsuite_partial_refund_item_id": "301",
        "netsuite_income_account_id": "106",
        "stripe_api_key": "sk_test_123",
    }
}


def _file_secrets(prefix: str) -> dict[str, str]:
    """Read ``<PREFIX><NAME>_FILE`` variables: the value is the content of that file."""
    out: dict[str, str] = {}
    for key, path in os.environ.items():
        if key.startswith(prefix) and key.endswith("_FILE") and path:
            name = key[len(prefix) : -len("_FILE")].lower()
            out[name] = Path(path).read_text().strip()
    return out


class MissingSettings(SystemExit):
    """A component cannot start: settings without a default are not set. The message names
    every missing variable (a ``SystemExit``: the process stops with it, no traceback)."""


def _profile() -> dict[str, Any]:
    # from the environment or the .env file, like every other setting
    name = os.environ.get(PREFIX + "PROFILE") or dotenv_values(".env").get(PREFIX + "PROFILE")
    if not name:
        return {}
    if name not in PROFILES:
        raise MissingSettings(f"{PREFIX}PROFILE={name!r} is not a profile (known: local)")
    return PROFILES[name]


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
            # a named profile fills what neither the environment nor a file gave
            for name, value in _profile().items():
                if name in cls.model_fields:
                    data.setdefault(name, value)
        return data

    @classmethod
    def load(cls: type[_S]) -> _S:
        """The settings, or ``MissingSettings`` naming every required variable not set."""
        try:
            return cls()
        except SettingsError as exc:  # a value the source cannot parse (JSON of a dict field)
            field = re.search(r'field "(\w+)"', str(exc))
            name = PREFIX + field.group(1).upper() if field else "a setting"
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            raise MissingSettings(f"invalid settings: {name} is not valid JSON{cause}") from None
        except ValidationError as exc:
            missing = [
                PREFIX + str(err["loc"][0]).upper()
                for err in exc.errors()
                if err["type"] == "missing" and err["loc"]
            ]
            if not missing:
                raise
            # the values given but wrong too, so that one start names everything to fix
            invalid = [
                f"{PREFIX}{str(err['loc'][0]).upper()} ({err['msg']})"
                for err in exc.errors()
                if err["type"] != "missing" and err["loc"]
            ]
            raise MissingSettings(
                f"missing settings: {', '.join(missing)} (these have no defaults: they name "
                f"your NetSuite set-up and Stripe account; {PREFIX}PROFILE=local gives the "
                "local stack's emulator and stripe-mock values)"
                + (f"; invalid: {', '.join(invalid)}" if invalid else "")
            ) from None


class KafkaSettings(_Base):
    """Kafka client settings; the security ones pass through to every client unchanged."""

    kafka_bootstrap_servers: str = Field(
        default_factory=lambda: StackSettings().kafka_bootstrap(),
        validation_alias=AliasChoices("LEDGER_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="comma-separated host:port list of brokers; default: the local stack's "
        "(127.0.0.1:kafka_port, one per broker of LEDGER_KAFKA_BROKERS); when set, `stack up` "
        "does not start Kafka",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="how clients talk to the brokers: PLAINTEXT; SSL (TLS, brokers verified "
        "with kafka_ssl_ca_location); SASL_PLAINTEXT (kafka_sasl_* credentials, no TLS); "
        "SASL_SSL (both)",
    )
    kafka_sasl_mechanism: str | None = Field(
        None,
        description="SASL mechanism for SASL_PLAINTEXT and SASL_SSL, e.g. PLAIN or SCRAM-SHA-512; "
        "unset: the client library's default (PLAIN in the faust processor)",
    )
    kafka_sasl_username: str | None = Field(
        None, description="SASL user name (SASL_PLAINTEXT and SASL_SSL)"
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (SASL_PLAINTEXT and SASL_SSL)"
    )
    kafka_ssl_ca_location: str | None = Field(
        None,
        description="CA certificate file (PEM) that verifies the brokers' certificates with SSL "
        "and SASL_SSL; unset: the system's CAs",
    )
    schema_registry_url: str = Field(
        default_factory=lambda: f"http://127.0.0.1:{StackSettings().registry_port}/apis/ccompat/v7",
        validation_alias=AliasChoices("LEDGER_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"),
        description="URL of the Confluent-compatible Schema Registry API; default: the local "
        "stack's "
        "Apicurio, http://127.0.0.1:<registry_port>/apis/ccompat/v7; when set, `stack up` does "
        "not start the registry",
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        None, description="user:password for the registry, if it needs one"
    )
    topic_prefix: str = Field("", description="prefix of every topic name (isolates tests/tenants)")
    publish_timeout_ms: int = Field(
        15000,
        description="how long a webhook waits for the broker's ack before answering 503; keep "
        "it above the cluster's failover time: a killed broker holds acks=all writes until the "
        "controller fences it (broker.session.timeout.ms, 9 s by default) and elects leaders",
    )
    topic_partitions: int = Field(
        3,
        description="partitions of every topic created (with its .dlq and the processor's "
        "changelogs and tables): at most this many workers of a group share the work, more "
        "stay idle as spares; existing topics must have this count",
    )
    topic_replication_factor: int = Field(
        default_factory=lambda: 3 if StackSettings().kafka_brokers >= 3 else 1,
        description="replicas of every topic created; default: 3 with LEDGER_KAFKA_BROKERS of 3 "
        "or more, else 1",
    )
    kafka_session_timeout_ms: int = Field(
        10000,
        description="how long a silent group member keeps its partitions: a killed worker's are "
        "handed on after this; too short and a paused worker (GC, a stalled host) is taken for "
        "dead and its partitions move (Kafka's default is 45000)",
    )
    kafka_group_instance_id: str | None = Field(
        None,
        description="static group membership: a stable id per process (e.g. the pod name); a "
        "restarted process with the same id takes its partitions back at once, without a "
        "rebalance, if it returns within the session timeout",
    )

    def client_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) configuration shared by producers, consumers, admin."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
            # librdkafka's own lines through Python logging: redacted and repeat-limited like
            # every other line (ledgerstream.logs), instead of printed to stderr per attempt
            "logger": logging.getLogger("librdkafka"),
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
    stripe_api_key: SecretStr | None = Field(
        None, description="secret or restricted key of the Stripe account (no default)"
    )
    stripe_api_base: str = Field(
        "https://api.stripe.com", description="point at stripe-mock or the test double locally"
    )
    stripe_api_version: str = Field(
        "2024-06-20", description="pinned Stripe-Version (the shapes the mapping reads)"
    )
    stripe_max_requests_per_s: float = Field(
        20.0, description="client-side request rate limit (Stripe: 25/s test, 100/s live)"
    )
    stripe_webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="endpoint signing secrets, JSON list or comma-separated (several: rotation)",
    )
    stripe_webhook_tolerance_s: int = Field(
        300,
        description="how old (seconds) a webhook's Stripe-Signature timestamp may be; an older "
        "one is rejected with 400 (guards against replays)",
    )

    def api_key(self) -> str:
        """The Stripe key; only the components that call Stripe need it (not the webhook)."""
        if self.stripe_api_key is None:
            raise MissingSettings(
                f"missing settings: {PREFIX}STRIPE_API_KEY (the Stripe account's secret or "
                f"restricted key; {PREFIX}PROFILE=local gives stripe-mock's)"
            )
        return self.stripe_api_key.get_secret_value()

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
    """SuiteTalk REST: where, and how the sink authenticates.

    Two methods, chosen by ``netsuite_auth``:
    - ``tba``: OAuth 1.0a token-based auth (consumer key/secret + token id/secret, HMAC-SHA256);
    - ``m2m``: OAuth 2.0 client credentials with a JWT assertion signed by the private key of the
      certificate uploaded to the integration (client id + certificate id + private key).
    """

    netsuite_account_id: str = Field("", description="account id as written, e.g. 123456_SB1")
    netsuite_base_url: str | None = Field(
        None, description="REST root; default https://<account>.suitetalk.api.netsuite.com"
    )
    netsuite_auth: Literal["tba", "m2m"] = Field(
        "tba", description="tba = OAuth 1.0a token-based auth; m2m = OAuth 2.0 client credentials"
    )
    netsuite_consumer_key: SecretStr | None = Field(
        None, description="consumer key of the integration record (tba)"
    )
    netsuite_consumer_secret: SecretStr | None = Field(
        None, description="consumer secret of the integration record (tba)"
    )
    netsuite_token_id: SecretStr | None = Field(
        None, description="token id of the access token (user, role and integration; tba)"
    )
    netsuite_token_secret: SecretStr | None = Field(
        None, description="token secret of that access token (tba)"
    )
    netsuite_client_id: SecretStr | None = Field(
        None, description="OAuth 2.0 client id of the integration record (m2m)"
    )
    netsuite_certificate_id: str | None = Field(
        None, description="certificate id shown by NetSuite's OAuth 2.0 client credentials setup"
    )
    netsuite_private_key: SecretStr | None = Field(
        None, description="PEM private key of that certificate (m2m); usually given as _FILE"
    )
    netsuite_jwt_algorithm: Literal["PS256", "RS256", "ES256"] = Field(
        "PS256",
        description="signature of the m2m JWT assertion: PS256 or RS256 for an RSA key, ES256 "
        "for an EC key",
    )
    netsuite_scopes: str = Field("rest_webservices", description="comma-separated OAuth 2 scopes")
    netsuite_timeout_s: float = Field(
        60.0, description="timeout (seconds) of every NetSuite request, m2m token requests too"
    )
    netsuite_concurrency: int = Field(
        5, description="concurrent requests the sink may use (the account's limit, or its share)"
    )
    netsuite_write_mode: Literal["single", "batch", "auto"] = Field(
        "single",
        description="single: one request per record; batch: asynchronous batch requests of up to "
        "100 records (NetSuite's REST async processors run them); auto: single writes, and "
        "batches for what the concurrency cannot keep up with (a backlog)",
    )
    netsuite_batch_jobs: int = Field(
        2,
        gt=0,
        description="batch jobs the sink keeps submitted at once (batch and auto modes): the "
        "account's REST async processors (more only queue in NetSuite)",
    )

    def rest_root(self) -> str:
        if self.netsuite_base_url:
            return self.netsuite_base_url.rstrip("/")
        host = self.netsuite_account_id.lower().replace("_", "-")
        return f"https://{host}.suitetalk.api.netsuite.com"

    def token_url(self) -> str:
        return self.rest_root() + "/services/rest/auth/oauth2/v1/token"

    def require_credentials(self) -> None:
        needed = {
            "tba": (
                "netsuite_account_id",
                "netsuite_consumer_key",
                "netsuite_consumer_secret",
                "netsuite_token_id",
                "netsuite_token_secret",
            ),
            "m2m": (
                "netsuite_account_id",
                "netsuite_client_id",
                "netsuite_certificate_id",
                "netsuite_private_key",
            ),
        }[self.netsuite_auth]
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            names = ", ".join(PREFIX + m.upper() for m in missing)
            raise SystemExit(f"missing NetSuite settings for auth {self.netsuite_auth}: {names}")


class StackSettings(_Base):
    """Where the embedded local stack keeps its downloads and its running state."""

    stack_cache_dir: Path = Field(
        default_factory=lambda: platformdirs.user_cache_path(APP),
        description="downloaded servers (Kafka, Apicurio, stripe-mock); default "
        "$XDG_CACHE_HOME/ledgerstream (~/.cache/ledgerstream)",
    )
    stack_state_dir: Path = Field(
        default_factory=lambda: platformdirs.user_state_path(APP),
        description="the local stack's logs, pid files and data; default "
        "$XDG_STATE_HOME/ledgerstream (~/.local/state/ledgerstream)",
    )
    kafka_version: str = Field(
        "4.3.1", description="Apache Kafka version the local stack fetches (Maven) and runs"
    )
    apicurio_version: str = Field(
        "3.3.3", description="Apicurio Registry version the local stack fetches (Maven) and runs"
    )
    stripe_mock_version: str = Field(
        "v0.197.0", description="stripe-mock version (git tag) the local stack builds (go install)"
    )
    kafka_port: int = Field(
        9092, description="broker port of the local stack's Kafka (node 1; see kafka_brokers)"
    )
    kafka_controller_port: int = Field(
        9093,
        description="KRaft controller port of the local stack's Kafka (node 1; see kafka_brokers)",
    )
    kafka_brokers: int = Field(
        1,
        description="brokers of the local KRaft cluster (each broker and controller too); node n "
        "listens on kafka_port + 10 (n - 1) and kafka_controller_port + 10 (n - 1); with 3 or "
        "more, topics get replication factor 3 and min.insync.replicas=2",
    )

    def kafka_node_ports(self, node: int) -> tuple[int, int]:
        return self.kafka_port + 10 * (node - 1), self.kafka_controller_port + 10 * (node - 1)

    def kafka_bootstrap(self) -> str:
        return ",".join(
            f"127.0.0.1:{self.kafka_node_ports(n)[0]}" for n in range(1, self.kafka_brokers + 1)
        )

    registry_port: int = Field(
        8081, description="HTTP port of the local stack's Apicurio Registry (the registry API)"
    )
    registry_management_port: int = Field(
        8082, description="Quarkus management port of the local stack's Apicurio Registry"
    )
    stripe_mock_port: int = Field(12111, description="HTTP port of the local stack's stripe-mock")
    stripe_mock_https_port: int = Field(
        12112, description="HTTPS port of the local stack's stripe-mock"
    )


class ObservabilitySettings(_Base):
    """Metrics and health endpoints (``ledgerstream/metrics.py``)."""

    metrics_port: int = Field(
        9400,
        description="port of /metrics, /healthz and /readyz of the router, the payout reader, "
        "the NetSuite sink, the metadata writer and the Events API poller (not of a --once "
        "pass); each on a host needs its own; 0 serves "
        "none (the webhook receiver serves them on its own port, the processor on its web port)",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per record; json: one JSON object per line (time, "
        "level, logger, message, component, and topic, partition, offset, stripe_id, "
        "netsuite_record where a line has them), for a log pipeline",
    )
    metrics_host: str = Field(
        "0.0.0.0",  # noqa: S104 - Prometheus scrapes from another host; no secret is served
        description="address the metrics server listens on",
    )


class ProcessorSettings(_Base):
    """The faust worker."""

    app_id: str = Field("ledgerstream-processor", description="consumer group / faust app id")
    processor_data_dir: str = Field(
        default_factory=lambda: str(platformdirs.user_data_path(APP) / "faust"),
        description="RocksDB table directory; default $XDG_DATA_HOME/ledgerstream/faust "
        "(~/.local/share/ledgerstream/faust)",
    )
    processor_store: str = Field("rocksdb://", description="faust table store URL")
    processor_web_bind: str = Field(
        "127.0.0.1",
        description="address the worker's web server (tables, /ledger/memory/) listens on; "
        "0.0.0.0 to reach it from other hosts",
    )
    processor_wait_s: float = Field(
        900.0, description="how long a record waits for its partner before it is reported"
    )
    processor_rocksdb_bounded: bool = Field(
        True,
        description="every table's RocksDB draws on the shared budget below; false: faust's "
        "own defaults per table and partition (64 MiB memtables x3, 2 GiB block cache each)",
    )
    processor_rocksdb_cache_mb: int = Field(
        64,
        gt=0,
        description="one block cache (MiB) shared by every table and partition of the worker; "
        "holds data, index and filter blocks and is charged with the memtables",
    )
    processor_rocksdb_write_buffer_mb: int = Field(
        32,
        gt=0,
        description="memtables of all tables and partitions together (MiB, part of the cache); "
        "beyond it memtables are flushed to disk",
    )
    processor_rocksdb_memtable_mb: int = Field(
        4, gt=0, description="memtable size (MiB) of one table partition before it is flushed"
    )
    processor_rocksdb_max_open_files: int = Field(
        64, gt=0, description="open SST files kept per table partition"
    )
    processor_malloc_mmap_threshold_kb: int = Field(
        128,
        ge=0,
        description="glibc: allocations from this size (KiB) get their own mapping, returned "
        "when freed; fixed so that freed RocksDB memtables do not stay in the heap "
        "(0: glibc's own, rising threshold)",
    )
    processor_max_poll_records: int = Field(
        1000,
        gt=0,
        description="records the consumer hands over per poll (faust broker_max_poll_records); "
        "bounds what table recovery holds in the Python heap at once",
    )
    processor_recovery_buffer_size: int = Field(
        200,
        gt=0,
        description="changelog records a table buffers during recovery before writing them "
        "to RocksDB (faust's default: 1000 per table)",
    )


class SinkSettings(_Base):
    """The NetSuite sink."""

    sink_group_id: str = Field("ledgerstream-netsuite-sink", description="consumer group")
    sink_max_attempts: int = Field(8, description="tries of one write before giving up")
    sink_dependency_timeout_s: float = Field(
        900.0, description="how long a command waits for the records it references"
    )
    sink_max_pending: int = Field(
        2000, description="commands held in memory (in flight or waiting) before reading pauses"
    )
    sink_report_interval_s: float = Field(30.0, description="how often the sink logs progress")
    sink_auth_verify_s: float = Field(
        15.0,
        description="after a run of 401s, how long the sink keeps asking NetSuite with a cheap "
        "authenticated read before it takes the credentials as wrong (a burst under load ends)",
    )
    sink_auth_failures: int = Field(
        30,
        description="consecutive 401s (no success between) taken as wrong credentials and not as "
        "NetSuite's spurious 401s under load; before the first success, 5 are enough",
    )
    sink_data_dir: str = Field(
        default_factory=lambda: str(platformdirs.user_data_path(APP) / "sink"),
        description="where the back-reference index is kept on disk while the sink runs (one "
        "directory per sink, rebuilt from netsuite.backrefs at each start); default "
        "$XDG_DATA_HOME/ledgerstream/sink (~/.local/share/ledgerstream/sink)",
    )
    sink_index_cache_mb: int = Field(
        16,
        ge=4,
        description="the back-reference index's RocksDB block cache (memtables, index and "
        "filter blocks charged to it): its memory follows this, not the number of NetSuite "
        "records",
    )


class MetadataSettings(_Base):
    """The Stripe metadata writer."""

    metadata_group_id: str = Field("ledgerstream-stripe-metadata", description="consumer group")
    metadata_batch_size: int = Field(
        100,
        description="back-references read at most per poll; their updates are merged per "
        "Stripe object (one Stripe call each) and applied before the offsets are committed",
    )


class AccountingSettings(_Base):
    """How Stripe objects become NetSuite records: set-up internal ids and policies.

    The set-up ids have no defaults: they name records of your NetSuite account, and a wrong
    one posts to the wrong account (``AccountingSettings.load`` names every one not set;
    ``LEDGER_PROFILE=local`` gives the NetSuite emulator's seeded set-up). See BEHAVIOR.md for
    what each policy does.
    """

    # -- NetSuite set-up the records refer to (internal ids)
    netsuite_subsidiary_id: str = Field(
        description="internal id of the subsidiary every customer, item and transaction is in"
    )
    netsuite_base_currency: str = Field(description="the subsidiary's base currency")
    netsuite_currency_ids: dict[str, str] = Field(
        description="ISO code -> NetSuite currency internal id (JSON object)",
    )
    netsuite_undeposited_funds_account_id: str = Field(
        description="internal id of the Undeposited Funds account: customer payments wait there "
        "(and refunds are paid from it) until a payout's deposit moves them to the bank; "
        "out-of-band payments too, unless out_of_band_account_id is set",
    )
    netsuite_bank_account_ids: dict[str, str] = Field(
        description="payout currency -> bank account internal id (JSON object)",
    )
    netsuite_fee_account_ids: dict[str, str] = Field(
        description="Stripe fee type -> expense account id; 'default' for the rest",
    )
    netsuite_other_income_account_id: str = Field(
        description="dispute reversals, fee refunds, adjustments"
    )
    netsuite_fx_account_id: str = Field(description="currency-conversion differences")
    netsuite_suspense_account_id: str = Field(
        description="variance/suspense: what a deposit could not match"
    )
    netsuite_payment_method_id: str = Field(
        description="internal id of the payment method (e.g. Stripe) of customer payments and "
        "refunds"
    )
    netsuite_global_item_id: str = Field(description="service sale item for every line")
    netsuite_discount_item_id: str = Field(description="discount item (non-posting)")
    netsuite_tax_item_id: str = Field(description="item carrying Stripe tax amounts")
    netsuite_shipping_item_id: str = Field(description="item carrying shipping")
    netsuite_partial_refund_item_id: str = Field(description="generic partial refund item")
    netsuite_income_account_id: str = Field(description="income account of new items")
    netsuite_global_customer_id: str | None = Field(
        None, description="internal id of an existing customer for global mode (else created)"
    )

    # -- policies
    customer_mode: Literal["per_customer", "link", "global"] = Field(
        "per_customer",
        description="per_customer: one NetSuite customer per Stripe customer, created at its "
        "first transaction; link: use the customer its netsuite_customer_id metadata names, else "
        "match an existing one on customer_match_field and create only if none matches; global: "
        "every transaction goes to the one global customer",
    )
    customer_match_field: str = Field(
        "email",
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="NetSuite customer field matched in link mode: email, companyName, entityId, "
        "phone or a custom field (custentity_…)",
    )
    customer_match_source: str | None = Field(
        None,
        pattern=r"^(email|name|phone|id|description|metadata\.[A-Za-z0-9_.\-]+)$",
        description="the Stripe customer value matched in link mode: email, name, phone, id, "
        "description or metadata.<key> (default: email for email, name for companyName and "
        "entityId, phone for phone; required for any other field)",
    )
    item_mode: Literal["per_price", "global"] = Field(
        "global",
        description="global: every invoice line uses netsuite_global_item_id and every discount "
        "netsuite_discount_item_id; per_price: the pipeline creates one service sale item per "
        "Stripe price and one discount item per coupon and uses those (lines without a price "
        "and discounts without a coupon still use the global ones)",
    )
    sync_mode: Literal["all", "opt_in"] = Field(
        "all", description="opt_in: only objects with netsuite_allow_integration=true"
    )
    sync_zero_invoices: bool = Field(False, description="write all-zero (trial) invoices")
    revenue_recognition: bool = Field(False, description="service period dates on lines")
    keep_unpaid_invoices_open: bool = Field(
        False, description="do not close uncollectible invoices with a credit memo"
    )
    post_payment_to_paid_invoice: bool = Field(
        False, description="post a payment on a fully paid invoice unapplied instead of skipping"
    )
    out_of_band_close: Literal["payment", "credit_memo"] = Field(
        "payment",
        description="an invoice marked paid outside Stripe: a customer payment (into "
        "out_of_band_account_id, else Undeposited Funds) or a credit memo applied to it",
    )
    out_of_band_account_id: str | None = Field(
        None,
        description="account of out-of-band payments; unset: Undeposited Funds, where they "
        "wait to be deposited with the bank receipt",
    )
    deposit_variance_policy: Literal["wait", "post"] = Field(
        "post",
        description="when a payout's transactions are still incomplete or do not add up after "
        "LEDGER_PROCESSOR_WAIT_S: post the deposit with a labelled variance line on the "
        "suspense account (completed by upsert when the rest arrives), or wait (it stays "
        "unposted and is reported on the payout topic's .dlq)",
    )
    netsuite_payout_failure_account_id: str | None = Field(
        None,
        description="account a failed payout's money passes through on its way back into a "
        "later payout's deposit (nets to zero); unset: the suspense account",
    )
    deposit_max_lines: int = Field(
        10_000,
        ge=2,
        description="lines per NetSuite deposit; a payout with more becomes several deposits "
        "(po_…, po_…-2, …). NetSuite limits the lines of a transaction (Oracle: Line "
        "Limitations for Transactions, article_159361099314); 10,000 is the deposit cap",
    )
    open_period_start: str | None = Field(
        None, description="YYYY-MM-DD: earlier transaction dates move here (memo keeps the date)"
    )

    @model_validator(mode="after")
    def _match_source_known(self) -> AccountingSettings:
        if self.customer_mode == "link" and self.customer_match_source is None:
            if self.customer_match_field.lower() not in _MATCH_SOURCES:
                raise ValueError(
                    f"customer_match_source is required to match on {self.customer_match_field}"
                    " (which Stripe value it holds: email, name, phone, id, description or "
                    "metadata.<key>)"
                )
        return self

    def match_source(self) -> str:
        """The Stripe value link mode matches ``customer_match_field`` against."""
        if self.customer_match_source:
            return self.customer_match_source
        return _MATCH_SOURCES.get(self.customer_match_field.lower(), "email")


# the Stripe value a NetSuite customer field holds, where it goes without saying
_MATCH_SOURCES = {"email": "email", "companyname": "name", "entityid": "name", "phone": "phone"}


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


@lru_cache
def accounting() -> AccountingSettings:
    return AccountingSettings.load()
