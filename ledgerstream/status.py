"""Where each Stripe object is in the pipeline, as the components report it.

Each component writes what it did with an object to the compacted ``ledgerstream.status``
topic, keyed ``<stripe id>|<stage>[|<detail>]``, as it goes (through the producer whose
acknowledgements it already waits for before committing):

- the router: ``event|<event id>`` for each event of the object it routed (type, time, topic);
- the processor: ``processed`` (booked, or waiting and on what, since when; written when one
  of the object's own records is read and when it stops waiting, not each time another
  record books it again) and
  ``sent|<command key>`` for each NetSuite command it sent for the object;
- the NetSuite sink: ``written|<command key>`` (record type, internal id) or
  ``failed|<command key>`` (why; a later write of it removes the failure);
- the metadata writer: ``backref`` (the metadata keys it set on the Stripe object).

``ledgerstream status <id>`` reads the keys of one object from this one topic (never the
pipeline's own topics) and prints them in order. The values are small JSON objects with no
payload.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ledgerstream import settings, topics
from ledgerstream.kafka_util import read_latest

SEP = "|"


def topic() -> str:
    return topics.name(topics.STATUS)


def key(stripe_id: str, stage: str, detail: str = "") -> bytes:
    return SEP.join([stripe_id, stage, *([detail] if detail else [])]).encode()


def value(**fields: Any) -> bytes:
    """A status value: the fields given and when it was written."""
    return json.dumps({"at": datetime.now(UTC).isoformat(), **fields}, default=str).encode()


def read(stripe_id: str) -> list[tuple[str, dict[str, Any]]]:
    """One object's status entries, ``(stage, fields)``, oldest first."""
    prefix = f"{stripe_id}{SEP}".encode()
    entries = []
    for raw, (_, val) in read_latest(topic()).items():
        if raw.startswith(prefix) and val is not None:
            stage = raw.decode().split(SEP)[1]
            entries.append((stage, json.loads(val)))
    return sorted(entries, key=lambda e: str(e[1].get("at", "")))


# NetSuite's UI pages of the record types written (the record's "view" URL)
UI_PAGES = {
    "customer": "app/common/entity/custjob.nl",
}
TRANSACTION_PAGE = "app/accounting/transactions/transaction.nl"


def netsuite_link(record_type: str, internal_id: str) -> str | None:
    """The record's page in NetSuite's UI (``https://<account>.app.netsuite.com/…?id=``);
    None without an account id."""
    account = settings.NetSuiteSettings().netsuite_account_id
    if not account:
        return None
    host = account.lower().replace("_", "-")
    page = UI_PAGES.get(record_type, TRANSACTION_PAGE)
    return f"https://{host}.app.netsuite.com/{page}?id={internal_id}"


def describe(stripe_id: str, entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The entries for a person, one line each, in order, with what to do about a failure."""
    if not entries:
        return [
            f"{stripe_id}: nothing recorded (not received, or received before the status "
            "topic existed)"
        ]
    lines = [f"{stripe_id}:"]
    for stage, f in entries:
        at = f.get("at", "")
        if stage == "event":
            lines.append(
                f"  received  {at}  {f.get('type')} {f.get('event_id') or '(backfill)'} "
                f"(created {f.get('created')}), routed to {f.get('topic')}"
            )
        elif stage == "processed":
            if f.get("state") == "waiting":
                lines.append(f"  waiting   {at}  for {f.get('reason')} (since {f.get('since')})")
            else:
                lines.append(f"  processed {at}  booked")
        elif stage == "sent":
            lines.append(f"  sent      {at}  {f.get('record_type')} {f.get('external_id')}")
        elif stage == "written":
            link = netsuite_link(str(f.get("record_type")), str(f.get("internal_id")))
            lines.append(
                f"  written   {at}  NetSuite {f.get('record_type')} {f.get('external_id')} "
                f"internal id {f.get('internal_id')}" + (f"  {link}" if link else "")
            )
        elif stage == "backref":
            lines.append(f"  backref   {at}  Stripe metadata {f.get('metadata')}")
        elif stage == "failed":
            lines.append(
                f"  FAILED    {at}  {f.get('record_type')} {f.get('external_id')}: "
                f"{f.get('reason')}"
            )
            lines.append(
                f"            dead letter on {f.get('dlq')}: ledgerstream dlq show {stripe_id}; "
                f"after the fix: ledgerstream dlq redrive --stripe-id {stripe_id}"
            )
        else:
            lines.append(f"  {stage:9} {at}  {f}")
    return lines
