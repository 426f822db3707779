"""The processor's ``take``: what an outcome sends, when agents of several topics interleave.

The faust app is not started here: ``Processor.take`` runs on a stand-in with the same
attributes (plain dicts for the tables), and ``send`` yields to the event loop as the real one
does while the producer takes the message."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from ledgerstream.accounting.ledger import Outcome
from ledgerstream.commands import Command
from ledgerstream.processors.app import Processor


def stand_in() -> Any:
    sent: list[str] = []

    async def send(cmd: Command) -> None:
        await asyncio.sleep(0)  # the producer's await: another agent runs meanwhile
        await asyncio.sleep(0)
        sent.append(cmd.key)

    statuses: list[tuple[str, str, str]] = []

    async def report(stripe_id: str, stage: str, detail: str = "", **_: Any) -> None:
        statuses.append((stripe_id, stage, detail))

    return SimpleNamespace(
        emitted={}, waiting={}, sending={}, send=send, sent=sent, _status=report, statuses=statuses
    )


def test_two_agents_booking_the_same_record_at_once_send_its_command_once() -> None:
    """Seen in CI: the customer's agent (booking the invoices that waited for the customer) and
    the invoice's agent both sent the same invoice command, which the sink then wrote twice."""
    invoice = Command("invoice", "in_1", {"memo": "x"}, "invoice", "in_1", None)
    payment = Command("customerPayment", "ch_1", {"memo": "y"}, "charge", "ch_1", None)
    proc = stand_in()

    async def both() -> None:
        await asyncio.gather(
            Processor.take(proc, Outcome(commands=[invoice, payment]), None, "t"),
            Processor.take(proc, Outcome(commands=[invoice]), None, "t"),
        )

    asyncio.run(both())
    assert sorted(proc.sent) == ["customerPayment/ch_1", "invoice/in_1"]
    assert proc.emitted == {
        "invoice/in_1": invoice.command_id,
        "customerPayment/ch_1": payment.command_id,
    }
    assert proc.sending == {}
    # each command sent is reported on the status topic once, under its Stripe object
    assert sorted(proc.statuses) == [
        ("ch_1", "sent", "customerPayment/ch_1"),
        ("in_1", "sent", "invoice/in_1"),
    ]
    # a changed command is sent again; the same one is not
    changed = Command("invoice", "in_1", {"memo": "z"}, "invoice", "in_1", None)
    asyncio.run(Processor.take(proc, Outcome(commands=[changed, invoice, invoice]), None, "t"))
    assert proc.sent[2:] == ["invoice/in_1", "invoice/in_1"]


def test_a_failed_send_is_not_taken_for_sent() -> None:
    """The worker stops on a failed write and its replacement reads the record again: nothing
    may say the command was sent."""
    invoice = Command("invoice", "in_1", {"memo": "x"}, "invoice", "in_1", None)
    proc = stand_in()

    async def failing(cmd: Command) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("broker gone")

    proc.send = failing
    try:
        asyncio.run(Processor.take(proc, Outcome(commands=[invoice]), None, "t"))
    except RuntimeError:
        pass
    assert proc.emitted == {} and proc.sending == {}
