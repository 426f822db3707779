"""Avro contracts: the ``schemas/*.avsc`` files and Confluent wire-format (de)serializers.

The schemas are package data of ``ledgerstream.schemas`` (the checkout's ``schemas/`` folder),
read through ``importlib.resources``: the same code reads them from a checkout and from an
installed wheel.

The schema registry is any Confluent-compatible one (Apicurio's ``/apis/ccompat/v7`` locally).
Subjects use the topic-name strategy (``<topic>-value``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from ledgerstream import settings

SCHEMAS = resources.files("ledgerstream.schemas")


@lru_cache
def schema_text(name: str) -> str:
    """The canonical text of ``schemas/<name>.avsc``."""
    return json.dumps(json.loads(SCHEMAS.joinpath(f"{name}.avsc").read_text(encoding="utf-8")))


def schema_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".avsc") for p in SCHEMAS.iterdir() if p.name.endswith(".avsc")
    )


_clients: dict[str, SchemaRegistryClient] = {}


def registry() -> SchemaRegistryClient:
    """One registry client per URL per process (it caches ids and schemas)."""
    conf = settings.kafka().registry_config()
    client = _clients.get(conf["url"])
    if client is None:
        client = _clients[conf["url"]] = SchemaRegistryClient(conf)
    return client


# TOPIC: plain <topic>-value subjects; newer clients otherwise first probe an "associations"
# endpoint that Confluent-compatible registries such as Apicurio do not have.
_SERDE_CONF = {"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"}


class Serde:
    """Serializer and deserializer of one topic's values against one schema file."""

    def __init__(self, topic: str, schema: str, client: SchemaRegistryClient | None = None):
        self.topic = topic
        self.schema = schema
        client = client or registry()
        text = schema_text(schema)
        self._ser = AvroSerializer(client, text, conf=dict(_SERDE_CONF))
        self._de = AvroDeserializer(client, text, conf={"subject.name.strategy.type": "TOPIC"})
        self._ctx = SerializationContext(topic, MessageField.VALUE)

    def dumps(self, value: dict[str, Any]) -> bytes:
        data = self._ser(value, self._ctx)
        assert data is not None
        return data

    def loads(self, data: bytes) -> dict[str, Any]:
        value = self._de(data, self._ctx)
        if not isinstance(value, dict):
            raise ValueError("record is not an Avro record")
        return value
