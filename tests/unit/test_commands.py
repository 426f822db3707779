from decimal import Decimal

from ledgerstream.commands import Command, canonical_json, find_refs, ref, resolve_refs, sublists


def command(**over: object) -> Command:
    body = {
        "customer": ref("customer", "cus_1"),
        "payment": Decimal("49.00"),
        "apply": {"items": [{"doc": ref("invoice", "in_1"), "amount": Decimal("49.00")}]},
    }
    args = dict(
        record_type="customerPayment",
        external_id="ch_1",
        body=body,
        stripe_object="charge",
        stripe_id="ch_1",
        metadata_key="netsuite_customer_payment_id",
        source_event_ids=("evt_1",),
    )
    args.update(over)
    return Command(**args)  # type: ignore[arg-type]


def test_refs_found_in_order_and_resolved() -> None:
    cmd = command()
    assert cmd.depends_on == [("invoice", "in_1"), ("customer", "cus_1")]
    resolved = resolve_refs(cmd.body, {("customer", "cus_1"): "7", ("invoice", "in_1"): "9"})
    assert resolved["customer"] == {"id": "7"}
    assert resolved["apply"]["items"][0]["doc"] == {"id": "9"}
    assert find_refs(resolved) == []


def test_decimal_written_exactly() -> None:
    assert canonical_json({"b": Decimal("49.00"), "a": 1}) == '{"a":1,"b":49.00}'


def test_command_id_ignores_provenance_but_not_content() -> None:
    assert command().command_id == command(source_event_ids=("evt_2",)).command_id
    changed = command(body={**command().body, "payment": Decimal("49.01")})
    assert changed.command_id != command().command_id


def test_avro_round_trip_keeps_the_command() -> None:
    cmd = command()
    back = Command.from_avro(cmd.to_avro())
    assert back == cmd
    assert back.command_id == cmd.command_id
    assert cmd.to_avro()["depends_on"] == [
        {"record_type": "invoice", "external_id": "in_1"},
        {"record_type": "customer", "external_id": "cus_1"},
    ]


def test_sublists() -> None:
    assert sublists(command().body) == ["apply"]
