"""The webhook receiver's answers, with a stand-in publisher (the Kafka path is integration)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerstream import stripe_records as records
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers import webhook
from ledgerstream.producers.publisher import PublishError
from ledgerstream.settings import StripeSettings
from ledgerstream.testing.fixtures import signed, slice_events

SECRET, OLD_SECRET = "whsec_current", "whsec_previous"


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[dict[str, Any]] = []
        self.fail = fail
        self.counts = {"published": 0, "ignored": 0, "rejected": 0}

    async def publish(self, event: dict[str, Any]) -> str | None:
        records.validate_event(event)
        spec = records.route(event["type"])
        if spec is None:
            self.counts["ignored"] += 1
            return None
        records.to_record(spec, event)
        if self.fail:
            raise PublishError("broker down")
        self.published.append(event)
        return "stripe.events"

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def app(publisher: FakePublisher) -> web.Application:
    """The receiver with the endpoint's two secrets (rotation) and a stand-in publisher, both
    handed in through the bootstrap."""
    stripe_cfg = StripeSettings(stripe_webhook_secrets=f"{SECRET},{OLD_SECRET}")
    return webhook.make_app(Bootstrap(stripe=stripe_cfg, publisher=publisher))  # type: ignore[arg-type]


def post(publisher: FakePublisher, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with TestClient(TestServer(app(publisher))) as client:
            resp = await client.post("/webhooks/stripe", data=body, headers=headers)
            return resp.status, await resp.json()

    return asyncio.run(go())


def test_valid_event_is_published() -> None:
    pub = FakePublisher()
    body, sig = signed(slice_events("w")[0], SECRET)
    assert post(pub, body, {"Stripe-Signature": sig}) == (
        200,
        {"received": True, "topic": "stripe.events"},
    )
    assert len(pub.published) == 1


def test_secret_rotation_and_multiple_v1_values() -> None:
    pub = FakePublisher()
    event = slice_events("w")[1]
    body, old_sig = signed(event, OLD_SECRET)  # signed with the secret being rotated out
    assert post(pub, body, {"Stripe-Signature": old_sig})[0] == 200
    t = int(time.time())
    both = (
        stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_other", t)
        + ","
        + signed(event, SECRET, t)[1].split(",")[1]
    )
    assert post(pub, body, {"Stripe-Signature": both})[0] == 200
    assert len(pub.published) == 2


@pytest.mark.parametrize("case", ["forged", "stale", "missing", "garbage"])
def test_bad_signatures_get_400_and_publish_nothing(case: str) -> None:
    pub = FakePublisher()
    event = slice_events("w")[0]
    body, sig = {
        "forged": lambda: signed(event, "whsec_attacker"),
        "stale": lambda: signed(event, SECRET, int(time.time()) - 301),
        "missing": lambda: (signed(event, SECRET)[0], ""),
        "garbage": lambda: (signed(event, SECRET)[0], "t=abc,v1="),
    }[case]()
    status, answer = post(pub, body, {"Stripe-Signature": sig} if sig else {})
    assert status == 400 and answer == {"error": "signature verification failed"}
    assert pub.published == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[1,2]", json.dumps({"object": "charge"}).encode(), b"\xff\xfe binary"]
)
def test_signed_but_malformed_bodies_get_400(body: bytes) -> None:
    pub = FakePublisher()
    header = (
        stripe.WebhookSignature.generate_signature_header(body.decode(errors="replace"), SECRET)
        if body.isascii()
        else "t=1,v1=00"
    )
    status, _ = post(pub, body, {"Stripe-Signature": header})
    assert status == 400
    assert pub.published == []


def test_oversized_body_gets_413() -> None:
    body = b"{" + b" " * (webhook.MAX_BODY + 10) + b"}"
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
    assert post(FakePublisher(), body, {"Stripe-Signature": header})[0] == 413


def test_unknown_event_type_is_acknowledged_and_counted() -> None:
    pub = FakePublisher()
    event = {**slice_events("w")[0], "type": "balance.available"}
    body, sig = signed(event, SECRET)
    assert post(pub, body, {"Stripe-Signature": sig}) == (200, {"received": True, "ignored": True})
    assert pub.counts["ignored"] == 1 and pub.published == []


def test_broker_failure_gets_503_so_stripe_retries() -> None:
    body, sig = signed(slice_events("w")[0], SECRET)
    assert post(FakePublisher(fail=True), body, {"Stripe-Signature": sig})[0] == 503


def test_a_slow_readiness_probe_does_not_hold_webhooks() -> None:
    """The probe asks the broker and may wait for it; webhooks arriving meanwhile are answered
    (a probe run on the event loop held every request until the broker answered)."""
    probing, answered = threading.Event(), threading.Event()
    outcome: list[bool] = []

    class SlowProbe(FakePublisher):
        def ready(self) -> bool:
            probing.set()
            # the broker answers the probe only after the webhook was answered, or in 5 s
            outcome.append(answered.wait(5))
            return True

    body, sig = signed(slice_events("w")[0], SECRET)

    async def go() -> tuple[int, int]:
        async with TestClient(TestServer(app(SlowProbe()))) as client:
            probe = asyncio.ensure_future(client.get("/readyz"))
            await asyncio.to_thread(probing.wait, 10)
            headers = {"Stripe-Signature": sig}
            resp = await client.post("/webhooks/stripe", data=body, headers=headers)
            answered.set()
            return resp.status, (await probe).status

    assert asyncio.run(go()) == (200, 200)
    assert outcome == [True], "the webhook was held until the readiness probe finished"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda c: (
                st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_fuzzed_bodies_never_crash_and_never_publish_junk(body: bytes) -> None:
    pub = FakePublisher()
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = None
    header = stripe.WebhookSignature.generate_signature_header(text, SECRET) if text else "t=1,v1=0"
    status, _ = post(pub, body, {"Stripe-Signature": header})
    assert status in (200, 400)
    if status == 200:
        assert pub.published or pub.counts["ignored"] == 1
