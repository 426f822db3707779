"""Creating the pipeline's topics (a Kafka admin client): kept apart from ``topics``, which
only names them, so that code that needs a topic's name imports no Kafka client."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ledgerstream import settings
from ledgerstream.topics import ALL, PROCESSOR_OWN_TABLES, TopicSpec, dlq_name, name


def admin() -> AdminClient:
    return AdminClient(settings.kafka().client_config())


def processor_changelogs() -> list[str]:
    """The changelog topics of the processor's tables (faust names them ``<app id>-<table>-
    changelog``). Created with the others, before any worker starts: a worker that had to
    create them itself while a broker is down (replication factor 3, two brokers up) would
    run without them."""
    from ledgerstream.accounting.ledger import table_names

    app_id = settings.ProcessorSettings().app_id
    return [f"{app_id}-{t}-changelog" for t in [*table_names(), *PROCESSOR_OWN_TABLES]]


def planned(
    specs: tuple[TopicSpec, ...] = ALL, changelogs: bool = True
) -> list[tuple[str, dict[str, str]]]:
    """Every topic ``ensure_all`` creates (the processor's changelogs, then each topic and its
    dead-letter topic), with its topic config; all have ``topic_partitions`` partitions."""
    compact = {"cleanup.policy": "compact"}
    candidates: list[tuple[str, dict[str, str]]] = []
    if changelogs:
        candidates += [(topic, compact) for topic in processor_changelogs()]
    for spec in specs:
        candidates.append((name(spec), compact if spec.compacted else {}))
        if spec.dead_letters:
            candidates.append((dlq_name(spec), {}))
    return candidates


def ensure_all(specs: tuple[TopicSpec, ...] = ALL, changelogs: bool = True) -> list[str]:
    """Create missing topics (and their dead-letter topics, and the processor's changelog
    topics); return one line per topic."""
    cfg = settings.kafka()
    client = admin()
    existing = set(client.list_topics(timeout=10).topics)
    candidates = planned(specs, changelogs)
    wanted = [
        NewTopic(
            topic,
            num_partitions=cfg.topic_partitions,
            replication_factor=cfg.topic_replication_factor,
            config=conf,
        )
        for topic, conf in candidates
        if topic not in existing
    ]
    lines = []
    if wanted:
        for topic, future in client.create_topics(wanted, operation_timeout=30).items():
            try:
                future.result()
                lines.append(f"created {topic}")
            except Exception as exc:  # already exists (a concurrent creator) is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                lines.append(f"exists  {topic}")
    created = {t.topic for t in wanted}
    _wait_for_leaders(client, created)
    for spec in specs:
        for topic in (name(spec), *([dlq_name(spec)] if spec.dead_letters else [])):
            if topic not in created:
                lines.append(f"exists  {topic}")
    return lines


def delete_run(prefix: str, app_id: str, timeout: float = 30.0) -> list[str]:
    """Delete every topic of one run: those named with its topic ``prefix`` (dead-letter
    topics included) and its processor's own (``<app_id>-…``: changelogs, the assignor's).
    Returns their names. For throw-away runs on the local stack (the demo, tests): a broker
    keeps every partition it holds in memory, so runs that leave theirs behind exhaust its heap
    in the end."""
    if not prefix or not app_id:
        raise ValueError("delete_run needs a topic prefix and an app id")
    client = admin()
    names = sorted(
        t
        for t in client.list_topics(timeout=10).topics
        if t.startswith(prefix) or t.startswith(f"{app_id}-")
    )
    delete(client, names, timeout)
    return names


def delete(client: AdminClient, names: list[str], timeout: float = 30.0) -> None:
    """Delete the named topics; return once the broker no longer lists them."""
    if not names:
        return
    for future in client.delete_topics(names, operation_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as exc:  # deleted meanwhile (by a concurrent cleaner) is fine
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
    # the controller has accepted the deletions; the broker's metadata drops them a moment later
    deadline = time.monotonic() + timeout
    while left := set(names) & set(client.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics still listed {timeout} s after deletion: {sorted(left)}")
        time.sleep(0.2)


def _wait_for_leaders(client: AdminClient, names: set[str], timeout: float = 30.0) -> None:
    """New topics are usable once every partition has a leader."""
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        md = client.list_topics(timeout=10).topics
        if all(
            n in md
            and md[n].error is None
            and md[n].partitions
            and all(p.leader >= 0 for p in md[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.2)


def register_schemas(specs: tuple[TopicSpec, ...] = ALL) -> list[str]:
    """Register each topic's value schema under ``<topic>-value`` (what the serializers would
    do at their first record): a schema the registry refuses as incompatible stops here, at
    set-up, instead of at the first record of that topic. One line per subject."""
    from confluent_kafka.schema_registry import Schema

    from ledgerstream.avro import registry, schema_text

    client = registry()
    lines = []
    for spec in specs:
        if spec.schema is None:
            continue
        subject = f"{name(spec)}-value"
        schema_id = client.register_schema(subject, Schema(schema_text(spec.schema), "AVRO"))
        lines.append(f"schema  {subject} (id {schema_id})")
    return lines
