"""The NetSuite REST emulator over HTTP, as the sink sees it."""

from __future__ import annotations

import signal

import pytest
import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from ledgerstream.pipeline import Pipeline
from ledgerstream.settings import NetSuiteSettings
from sinks.netsuite_client import NetSuiteClient, NetSuiteResponseError

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def client_for(pipeline: Pipeline, **override: str) -> NetSuiteClient:
    values = {k.removeprefix("LEDGER_").lower(): v for k, v in pipeline.netsuite.items()}
    values.update(override)
    return NetSuiteClient(NetSuiteSettings(netsuite_base_url=pipeline.emulator_url, **values))


@pytest.fixture
def emulator(pipeline: Pipeline) -> Pipeline:
    pipeline.start("emulator", "emulator", "netsuite")
    pipeline.wait_http(f"{pipeline.emulator_url}/_emulator/records", "emulator")
    return pipeline


CUSTOMER = '{"companyName":"Acme","subsidiary":{"id":"1"}}'


def test_upsert_creates_then_updates_the_same_record(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    first = ns.upsert("customer", "cus_A1", CUSTOMER)
    again = ns.upsert("customer", "cus_A1", CUSTOMER)
    renamed = ns.upsert("customer", "cus_A1", '{"companyName":"Acme Inc."}')
    assert first == again == renamed
    record = ns.get("customer", "eid:cus_A1")
    assert record["id"] == first and record["externalId"] == "cus_A1"
    assert record["companyName"] == "Acme Inc." and record["subsidiary"] == {"id": "1"}
    assert ns.get("customer", first)["externalId"] == "cus_A1"
    stored = emulator.records("customer")
    assert len(stored) == 1 and stored[0]["version"] == 2  # the identical PUT changed nothing


def test_post_answers_204_with_location(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    resp = ns.session.post(ns.url("customer"), data='{"companyName":"Posted"}')
    assert resp.status_code == 204 and resp.content == b""
    internal_id = resp.headers["Location"].rsplit("/", 1)[1]
    assert resp.headers["Location"] == ns.url("customer", internal_id)
    assert ns.get("customer", internal_id)["companyName"] == "Posted"


def test_bad_signature_and_wrong_secret_get_401_invalid_login(emulator: Pipeline) -> None:
    wrong = client_for(emulator, netsuite_token_secret="not-the-secret")
    with pytest.raises(NetSuiteResponseError) as err:
        wrong.upsert("customer", "cus_X", CUSTOMER)
    assert err.value.status == 401
    assert err.value.details[0]["o:errorCode"] == "INVALID_LOGIN"
    good = client_for(emulator)
    # right keys, but a signed parameter was changed after signing
    auth = good.session.auth
    assert isinstance(auth, OAuth1)
    req = requests.Request("GET", good.url("customer"), auth=auth).prepare()
    header = req.headers["Authorization"]
    header = header.decode() if isinstance(header, bytes) else header
    assert 'oauth_nonce="' in header
    req.headers["Authorization"] = header.replace('oauth_nonce="', 'oauth_nonce="x')
    assert requests.Session().send(req).status_code == 401
    unsigned = requests.get(good.url("customer"), timeout=10)
    assert unsigned.status_code == 401
    assert unsigned.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
    assert emulator.records() == []
    # the realm must be the account id
    other_realm = OAuth1(
        auth.client.client_key,
        auth.client.client_secret,
        auth.client.resource_owner_key,
        auth.client.resource_owner_secret,
        signature_method=SIGNATURE_HMAC_SHA256,
        realm="OTHER",
    )
    assert requests.get(good.url("customer"), auth=other_realm, timeout=10).status_code == 401


def test_reference_validation_uses_error_details(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    body = '{"entity":{"id":"424242"},"item":{"items":[{"item":{"id":"301"},"amount":1}]}}'
    with pytest.raises(NetSuiteResponseError) as err:
        ns.upsert("invoice", "in_X", body)
    assert err.value.status == 400 and err.value.permanent
    detail = err.value.details[0]
    assert detail["o:errorCode"] == "INVALID_CONTENT"
    assert detail["o:errorPath"] == "entity"
    assert "Invalid Field Value 424242" in detail["detail"]
    customer = ns.upsert("customer", "cus_B", CUSTOMER)
    bad_item = (
        '{"entity":{"id":"' + customer + '"},"item":{"items":[{"item":{"id":"301"},"amount":1},'
        '{"item":{"id":"9999"},"amount":2}]}}'
    )
    with pytest.raises(NetSuiteResponseError) as err:
        ns.upsert("invoice", "in_X", bad_item)
    assert err.value.details[0]["o:errorPath"] == "item.items[1].item"
    assert [r["type"] for r in emulator.records()] == ["customer"]


def test_external_id_must_be_rest_safe(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    with pytest.raises(NetSuiteResponseError) as err:
        ns.upsert("creditMemo", "ns_memo:re_1", "{}")
    assert err.value.status == 400 and err.value.details[0]["o:errorCode"] == "INVALID_ID"


def test_sublist_replace_versus_append(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    customer = ns.upsert("customer", "cus_C", CUSTOMER)
    body = (
        '{"entity":{"id":"'
        + customer
        + '"},"item":{"items":[{"item":{"id":"301"},"amount":5.00}]}}'
    )
    ns.upsert("invoice", "in_C", body, replace=["item"])
    ns.upsert("invoice", "in_C", body, replace=["item"])
    assert len(ns.get("invoice", "eid:in_C")["item"]["items"]) == 1
    ns.upsert("invoice", "in_C", body)  # no replace: NetSuite adds the line again
    assert len(ns.get("invoice", "eid:in_C")["item"]["items"]) == 2


def test_list_pages_and_records_survive_a_restart(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    ids = [ns.upsert("customer", f"cus_L{i}", CUSTOMER) for i in range(5)]
    page = ns.session.get(ns.url("customer"), params={"limit": 2, "offset": 2}).json()
    assert page["count"] == 2 and page["hasMore"] is True and page["totalResults"] == 5
    assert [item["id"] for item in page["items"]] == ids[2:4]
    before = emulator.records()

    proc = emulator.procs.pop("emulator")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    emulator.start("emulator", "emulator", "netsuite")
    emulator.wait_http(f"{emulator.emulator_url}/_emulator/records", "emulator")

    assert emulator.records() == before
    assert ns.upsert("customer", "cus_L0", CUSTOMER) == ids[0]
    assert int(ns.upsert("customer", "cus_new", CUSTOMER)) > max(int(i) for i in ids)


def test_unknown_record_type_is_404(emulator: Pipeline) -> None:
    with pytest.raises(NetSuiteResponseError) as err:
        client_for(emulator).upsert("spaceship", "x1", "{}")
    assert err.value.status == 404
