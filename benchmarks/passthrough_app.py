"""A pass-through faust worker: same input topics and Avro decoding, forwards each record's
bytes to one output topic. The processor benchmark's yardstick for what faust itself costs."""

from __future__ import annotations

import os

import faust

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.processors.app import INPUTS


def create_app() -> faust.App:
    kafka = settings.kafka()
    proc = settings.ProcessorSettings()
    datadir = os.path.join(proc.processor_data_dir, proc.app_id, "passthrough")
    os.makedirs(datadir, exist_ok=True)
    app = faust.App(
        proc.app_id,
        broker=f"kafka://{kafka.kafka_bootstrap_servers}",
        datadir=datadir,
        topic_partitions=kafka.topic_partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
    )
    out = app.topic(
        topics.name(topics.NETSUITE_COMMANDS),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    for spec in INPUTS:
        serde = Serde(topics.name(spec), spec.schema or "")
        source = app.topic(
            topics.name(spec),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

        async def forward(stream: faust.StreamT, serde: Serde = serde) -> None:
            async for event in stream.events():
                serde.loads(event.value)  # decode, as the real worker does
                await out.send(key=event.key, value=event.value)

        app.agent(source, name=f"passthrough.{spec.name}")(forward)
    return app


if __name__ == "__main__":
    from faust.worker import Worker

    Worker(create_app(), loglevel="warning").execute_from_commandline()
