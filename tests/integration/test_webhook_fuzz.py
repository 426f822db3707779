"""The webhook against the real broker and registry under fuzzed and hostile requests.

Every request gets a clear answer: 4xx for what is not a signed Stripe event the pipeline can
store (bad or missing or stale signatures, a signature over another body, bodies that are not
JSON or not events, fields out of range, invalid UTF-8, oversized bodies), 200 for a stored
event or an acknowledged unknown type — never a 5xx for bad input, which Stripe would retry
for days. Nothing but the accepted events reaches ``stripe.events``, and the server stays up.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ledgerstream import settings, topic_admin, topics
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers import webhook
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import AppThread, new_run_id
from tests.integration.helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SECRET = "whsec_" + secrets.token_hex(16)
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LEDGER_TOPIC_PREFIX", f"{new_run_id('w')}.")
    mp.setenv("LEDGER_STRIPE_WEBHOOK_SECRETS", SECRET)
    for cached in (settings.kafka, settings.stripe):
        cached.cache_clear()
    topic_admin.ensure_all()
    app = AppThread(webhook.make_app(Bootstrap()))
    yield app.url + "/webhooks/stripe"
    app.close()
    mp.undo()
    for cached in (settings.kafka, settings.stripe):
        cached.cache_clear()


def header_for(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    resp = requests.post(url, data=body, headers=headers, timeout=60)
    SEEN[f"{resp.status_code // 100}xx"] += 1
    if resp.ok and not resp.json().get("ignored"):
        SEEN["stored"] += 1
    return resp


def event() -> dict[str, Any]:
    return copy.deepcopy(slice_events(seed="fuzz")[0])  # a customer.created


def test_hostile_requests_get_clear_client_errors(server: str) -> None:
    good = event()
    body, sig = signed(good, SECRET)
    cases: dict[str, tuple[bytes, dict[str, str], int]] = {
        "valid": (body, {"Stripe-Signature": sig}, 200),
        "no signature": (body, {}, 400),
        "forged signature": (body, {"Stripe-Signature": header_for(body, "whsec_other")}, 400),
        "stale signature": (body, {"Stripe-Signature": header_for(body, at=1_600_000_000)}, 400),
        "signature over another body": (body + b" ", {"Stripe-Signature": sig}, 400),
        "not JSON": (b"{nope", {"Stripe-Signature": header_for(b"{nope")}, 400),
        "JSON, not an event": (b"[1,2]", {"Stripe-Signature": header_for(b"[1,2]")}, 400),
        "invalid UTF-8": (b"\xff\xfe{}", {"Stripe-Signature": "t=1,v1=00"}, 400),
        "1 MB": (b"x" * 1_000_000, {"Stripe-Signature": "t=1,v1=00"}, 413),
        "20 MB": (b"x" * 20_000_000, {"Stripe-Signature": "t=1,v1=00"}, 413),
        "wrong content type (signature is what counts)": (
            body,
            {"Stripe-Signature": sig, "Content-Type": "text/plain"},
            200,
        ),
    }
    for field, value in {
        "created": -1_000_000_000_000_000,  # the year −31,686,769
        "id": 12345,  # an integer event id
    }.items():
        odd = {**event(), field: value}
        raw = json.dumps(odd).encode()
        cases[f"{field} = {value}"] = (raw, {"Stripe-Signature": header_for(raw)}, 400)
    unknown = json.dumps({**event(), "type": "issuing_card.created"}).encode()
    cases["unknown type"] = (unknown, {"Stripe-Signature": header_for(unknown)}, 200)
    got = {
        name: post(server, body, headers).status_code for name, (body, headers, _) in cases.items()
    }
    assert got == {name: want for name, (_, _, want) in cases.items()}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    changes=st.dictionaries(
        st.sampled_from(["id", "type", "created", "object", "data", "livemode", "api_version"]),
        json_values,
        max_size=3,
    ),
    object_changes=st.dictionaries(
        st.sampled_from(["id", "object", "email", "name", "metadata", "created", "balance"]),
        json_values,
        max_size=3,
    ),
)
def test_signed_events_with_any_field_values_never_get_a_server_error(
    server: str, changes: dict[str, Any], object_changes: dict[str, Any]
) -> None:
    fuzzed = event()
    fuzzed["data"]["object"].update(object_changes)
    fuzzed.update(changes)
    raw = json.dumps(fuzzed).encode()
    resp = post(server, raw, {"Stripe-Signature": header_for(raw)})
    assert resp.status_code in (200, 400), (resp.status_code, resp.text, fuzzed)


@hsettings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=2000))
def test_any_signed_bytes_never_get_a_server_error(server: str, body: bytes) -> None:
    resp = post(server, body, {"Stripe-Signature": header_for(body)})
    assert resp.status_code in (200, 400), (resp.status_code, resp.text)


def test_only_accepted_events_were_stored_and_the_server_is_up(server: str) -> None:
    stored = consume_all(topics.name(topics.STRIPE_EVENTS))
    assert len(stored) == SEEN["stored"] > 0
    assert SEEN["5xx"] == 0
    health = requests.get(server.replace("/webhooks/stripe", "/healthz"), timeout=10)
    assert health.status_code == 200
    print(f"webhook fuzz: requests by status class {dict(SEEN)}")
