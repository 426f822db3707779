"""Which Stripe objects the metadata writer updates: every one a back-reference can name."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ledgerstream.sinks.stripe_metadata import MetadataWriter


class Service:
    def __init__(self, calls: list[tuple[str, str, dict[str, Any]]], name: str):
        self.calls, self.name = calls, name

    def update(self, stripe_id: str, params: dict[str, Any]) -> None:
        self.calls.append((self.name, stripe_id, params))


class FakeV1:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Service:
        return Service(self.calls, name)


class FakeClient:
    def __init__(self) -> None:
        self.v1 = FakeV1()


def writer() -> tuple[MetadataWriter, FakeClient, list[tuple[Any, BaseException]]]:
    w = MetadataWriter()
    client = FakeClient()
    w.client = client  # type: ignore[assignment]
    dead: list[tuple[Any, BaseException]] = []
    w._dead_letter = lambda msg, exc: dead.append((msg, exc))  # type: ignore[method-assign]
    return w, client, dead


def test_prices_and_coupons_get_their_netsuite_item_ids() -> None:
    w, client, dead = writer()
    w.apply(
        {
            ("price", "price_1"): {"netsuite_service_sale_item_id": "301"},
            ("coupon", "SPRING"): {"netsuite_discount_item_id": "302"},
        }
    )
    assert sorted(client.v1.calls) == [
        ("coupons", "SPRING", {"metadata": {"netsuite_discount_item_id": "302"}}),
        ("prices", "price_1", {"metadata": {"netsuite_service_sale_item_id": "301"}}),
    ]
    assert w.updated == 2 and dead == []


def test_a_back_reference_to_an_object_type_without_metadata_is_dead_lettered() -> None:
    w, client, dead = writer()
    sources: dict[tuple[str, str], list[Any]] = defaultdict(list)
    sources[("subscription_item", "si_1")].append("the record")
    w.apply({("subscription_item", "si_1"): {"netsuite_x_id": "1"}}, sources)
    assert client.v1.calls == []
    assert [(m, str(e)) for m, e in dead] == [
        ("the record", "no Stripe metadata update for object type 'subscription_item'")
    ]
