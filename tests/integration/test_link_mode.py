"""Link mode on a field the user names, and individuals' names, through the whole pipeline.

NetSuite already holds a customer that carries the Stripe customer id in a custom field
(``custentity_stripe_customer_id``, padded with blanks as typed by hand). With
``customer_match_field`` set to that field and ``customer_match_source=id``, that Stripe
customer's transactions must reference the existing record and no second one may be created;
the other customers are created, individuals (``netsuite_customer_type=individual``) with first
and last name, companies with the company name.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import pipeline_on_double, post_webhooks
from tests.integration.test_netsuite_emulator import client_for
from tests.unit.test_ledger import CFG

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SCENARIO = Scenario(
    seed=12,
    customers=6,
    months=1,
    refund_rate=0.0,
    dispute_rate=0.0,
    credit_note_rate=0.0,
    individual_rate=1.0,
)
LINK = {
    "customer_mode": "link",
    "customer_match_field": "custentity_stripe_customer_id",
    "customer_match_source": "id",
}


def test_link_mode_on_a_custom_field_and_individuals_names(tmp_path: Path) -> None:
    history = generate(SCENARIO)
    customers = [o for o in history.objects.values() if o["object"] == "customer"]
    people = [c for c in customers if c["metadata"].get("netsuite_customer_type") == "individual"]
    companies = [c for c in customers if c not in people]
    assert people and companies
    book = reference_booking(history, CFG.model_copy(update=LINK))
    assert book.dead_letters == []
    invoices = {c.external_id: c for c in book.commands.values() if c.record_type == "invoice"}
    owner = {eid: c.body["entity"]["$ref"]["externalId"] for eid, c in invoices.items()}
    billed = collections.Counter(owner.values())
    known = max(billed, key=lambda cus: billed[cus])  # the one NetSuite already has
    creates = {cus for cus in billed if cus != known}

    env = {f"LEDGER_{k.upper()}": v for k, v in LINK.items()}
    with pipeline_on_double(tmp_path, history, **env) as pipe:
        existing = client_for(pipe).upsert(
            "customer",
            "crm-1",
            '{"companyName":"Existing CRM customer","subsidiary":{"id":"1"},'
            f'"custentity_stripe_customer_id":"  {known}  "}}',
        )
        post_webhooks(pipe, history.events)
        records = pipe.wait_for_records(
            {"invoice": len(invoices), "customer": 1 + len(creates)}, timeout=300
        )

    written = {r["externalId"]: r for r in records if r["type"] == "customer"}
    assert set(written) == {"crm-1", *creates}  # the known customer was linked, not created
    assert written["crm-1"]["id"] == existing
    entity = {r["externalId"]: r["entity"]["id"] for r in records if r["type"] == "invoice"}
    assert {eid for eid, cus in owner.items() if cus == known} == {
        eid for eid, ns_id in entity.items() if ns_id == existing
    }
    for obj in customers:
        if obj["id"] not in creates:
            continue
        record = written[obj["id"]]
        if obj in people:
            first, last = obj["name"].rsplit(" ", 1)
            assert record["isPerson"] is True
            assert (record["firstName"], record["lastName"]) == (first, last)
            assert "companyName" not in record
        else:
            assert record["isPerson"] is False and record["companyName"]
