"""The NetSuite REST emulator over HTTP, as the sink sees it."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from ledgerstream.settings import NetSuiteSettings
from ledgerstream.sinks.netsuite_client import (
    NetSuiteAuthError,
    NetSuiteClient,
    NetSuiteResponseError,
)
from ledgerstream.testing.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def client_for(pipeline: Pipeline, **override: Any) -> NetSuiteClient:
    values: dict[str, Any] = {}
    for key, value in pipeline.netsuite.items():
        name = key.removeprefix("LEDGER_").lower()
        if name.endswith("_file"):
            name, value = name.removesuffix("_file"), Path(value).read_text()
        values[name] = value
    values.update(override)
    return NetSuiteClient(NetSuiteSettings(netsuite_base_url=pipeline.emulator_url, **values))


def behave(pipeline: Pipeline, **changes: Any) -> None:
    resp = requests.post(f"{pipeline.emulator_url}/_emulator/behaviour", json=changes, timeout=5)
    resp.raise_for_status()


def other_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


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


def test_a_company_needs_its_name_and_an_individual_a_first_and_last_name(
    emulator: Pipeline,
) -> None:
    ns = client_for(emulator)
    for body, missing in (
        ('{"isPerson":false,"subsidiary":{"id":"1"}}', "companyName"),
        ('{"isPerson":true,"firstName":"Ada","subsidiary":{"id":"1"}}', "lastName"),
        ('{"isPerson":true,"companyName":"Ada Ltd","subsidiary":{"id":"1"}}', "firstName"),
    ):
        with pytest.raises(NetSuiteResponseError) as err:
            ns.upsert("customer", "cus_P", body)
        assert err.value.status == 400
        assert err.value.details[0]["detail"] == f"Please enter value(s) for: {missing}"
    person = '{"isPerson":true,"firstName":"Ada","lastName":"Lovelace","subsidiary":{"id":"1"}}'
    ns.upsert("customer", "cus_P", person)
    [record] = emulator.records("customer")
    assert (record["firstName"], record["lastName"]) == ("Ada", "Lovelace")


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


# ----------------------------------------------------------------- OAuth 2.0 machine-to-machine
def test_m2m_token_is_fetched_once_then_refreshed_before_expiry(emulator: Pipeline) -> None:
    behave(emulator, token_ttl_s=2)
    ns = client_for(emulator, netsuite_auth="m2m")
    first = ns.upsert("customer", "cus_M1", CUSTOMER)
    assert ns.upsert("customer", "cus_M1", CUSTOMER) == first
    assert emulator.emulator_stats()["tokens_issued"] == 1
    time.sleep(2.1)  # the token has expired: the client fetches a new one before using it
    assert ns.upsert("customer", "cus_M1", CUSTOMER) == first
    stats = emulator.emulator_stats()
    assert stats["tokens_issued"] == 2
    assert stats["requests"] == {"token 200": 2, "PUT 204": 3}
    # a TBA-signed client still works on the same account
    assert client_for(emulator).get("customer", "eid:cus_M1")["id"] == first


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"netsuite_private_key": "other"}, "client assertion not verified"),
        ({"netsuite_client_id": "not-the-client"}, "iss is not a client id"),
        ({"netsuite_certificate_id": "not-the-certificate"}, "kid is not a certificate"),
        ({"netsuite_scopes": "restlets"}, "scope must include rest_webservices"),
    ],
)
def test_m2m_wrong_credentials_are_refused_with_a_clear_error(
    emulator: Pipeline, override: dict[str, str], reason: str
) -> None:
    if override.get("netsuite_private_key") == "other":
        override = {"netsuite_private_key": other_private_key()}
    ns = client_for(emulator, netsuite_auth="m2m", **override)
    with pytest.raises(NetSuiteAuthError) as err:
        ns.upsert("customer", "cus_M2", CUSTOMER)
    assert reason in str(err.value) and "LEDGER_NETSUITE_CLIENT_ID" in str(err.value)
    assert emulator.records("customer") == []
    # a bearer token that was never issued is refused like a bad TBA signature
    resp = requests.put(
        f"{emulator.emulator_url}/services/rest/record/v1/customer/eid:cus_M2",
        data=CUSTOMER,
        headers={"Authorization": "Bearer made-up"},
        timeout=5,
    )
    assert resp.status_code == 401
    assert resp.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


# ----------------------------------------------------------------- limits and faults
def test_requests_beyond_the_concurrency_limit_get_429(emulator: Pipeline) -> None:
    behave(emulator, concurrency_limit=2, latency_ms=400)
    ns = client_for(emulator)
    outcomes: list[int] = []

    def put(i: int) -> None:
        try:
            ns.upsert("customer", f"cus_C{i}", CUSTOMER)
            outcomes.append(204)
        except NetSuiteResponseError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [204, 204, 429, 429, 429, 429]
    stats = emulator.emulator_stats()
    assert stats["faults"] == {"concurrency": 4} and stats["max_in_flight"] >= 3
    assert len(emulator.records("customer")) == 2


def test_injected_errors_write_nothing_and_dropped_responses_commit(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    behave(emulator, error_rates={"503": 1.0})
    with pytest.raises(NetSuiteResponseError) as err:
        ns.upsert("customer", "cus_F1", CUSTOMER)
    assert err.value.status == 503 and emulator.records("customer") == []
    behave(emulator, error_rates={}, spurious_401_rate=1.0)
    with pytest.raises(NetSuiteResponseError) as err:
        ns.upsert("customer", "cus_F1", CUSTOMER)
    assert err.value.status == 401 and emulator.records("customer") == []
    behave(emulator, spurious_401_rate=0.0, drop_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        ns.upsert("customer", "cus_F1", CUSTOMER)
    assert [r["externalId"] for r in emulator.records("customer")] == ["cus_F1"]
    behave(emulator, drop_after_commit_rate=0.0)
    ns.upsert("customer", "cus_F1", CUSTOMER)  # the retry is the same upsert: still one record
    assert len(emulator.records("customer")) == 1
    assert emulator.emulator_stats()["faults"] == {"503": 1, "401": 1, "drop": 1}


# ----------------------------------------------------------------- governance, set-up records
GOVERNANCE = "/services/rest/system/v1/governanceLimits"


def test_governance_limits_answer_in_oracles_shape(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    # no limit allocated to the integration: it shares the account's unallocated limit
    assert ns.read(GOVERNANCE) == {
        "accountConcurrencyLimit": 5,
        "accountUnallocatedConcurrencyLimit": 5,
        "integrationLimitType": "accountLimit",
    }
    behave(emulator, integration_concurrency_limit=2)
    assert ns.read(GOVERNANCE) == {
        "accountConcurrencyLimit": 5,
        "accountUnallocatedConcurrencyLimit": 3,
        "integrationConcurrencyLimit": 2,
        "integrationLimitType": "integrationSpecific",
    }
    # an enforced limit is the account's limit it reports
    behave(emulator, concurrency_limit=12, integration_concurrency_limit=0)
    assert ns.read(GOVERNANCE)["accountConcurrencyLimit"] == 12
    assert client_for(emulator, netsuite_auth="m2m").read(GOVERNANCE)["integrationLimitType"] == (
        "accountLimit"
    )
    unsigned = requests.get(f"{emulator.emulator_url}{GOVERNANCE}", timeout=10)
    assert unsigned.status_code == 401
    assert unsigned.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
    assert emulator.emulator_stats()["requests"]["GET 401"] == 1


def test_governance_limits_from_the_command_line(pipeline: Pipeline) -> None:
    pipeline.start(
        "emulator",
        "emulator",
        "netsuite",
        env={
            "LEDGER_EMULATOR_ACCOUNT_CONCURRENCY_LIMIT": "15",
            "LEDGER_EMULATOR_INTEGRATION_CONCURRENCY_LIMIT": "10",
        },
    )
    pipeline.wait_http(f"{pipeline.emulator_url}/_emulator/records", "emulator")
    assert client_for(pipeline).read(GOVERNANCE) == {
        "accountConcurrencyLimit": 15,
        "accountUnallocatedConcurrencyLimit": 5,
        "integrationConcurrencyLimit": 10,
        "integrationLimitType": "integrationSpecific",
    }


def test_set_up_records_are_read_under_their_own_record_type(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    assert ns.get("subsidiary", "1")["name"] == "Parent Company"
    assert ns.get("currency", "14")["symbol"] == "EUR"
    assert ns.get("account", "102")["acctType"] == "Bank"
    assert ns.get("account", "101")["acctType"] == "UnDepFunds"
    assert ns.get("paymentMethod", "201")["name"] == "Stripe"
    assert ns.get("discountItem", "302")["itemId"] == "Stripe Discount"
    for rtype, ident in [("serviceSaleItem", "104"), ("account", "301"), ("currency", "1")]:
        with pytest.raises(NetSuiteResponseError) as err:
            ns.get(rtype, ident)
        assert err.value.status == 404
        assert err.value.details[0]["o:errorCode"] == "NONEXISTENT_ID"


# ----------------------------------------------------------------- deposits
def _payment(ns: NetSuiteClient, eid: str, amount: str, undeposited: bool = True) -> str:
    customer = ns.upsert("customer", "cus_D", CUSTOMER)
    body = {
        "customer": {"id": customer},
        "payment": amount,
        "undepFunds": undeposited,
        "account": {"id": "101" if undeposited else "102"},
        "currency": {"id": "11"},
    }
    return ns.upsert("customerPayment", eid, json.dumps(body))


def _deposit(payments: list[tuple[str, str]], fee: str = "0") -> str:
    return json.dumps(
        {
            "account": {"id": "102"},
            "currency": {"id": "11"},
            "payment": {
                "items": [{"id": p, "deposit": True, "paymentAmount": a} for p, a in payments]
            },
            "cashback": {"items": [{"account": {"id": "104"}, "amount": fee}]},
        }
    )


def test_deposit_validation_as_netsuite_does_it(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    p1 = _payment(ns, "ch_1", "100.00")
    p2 = _payment(ns, "ch_2", "5.00")
    posted = _payment(ns, "ch_3", "7.00", undeposited=False)
    first = ns.upsert("deposit", "po_1", _deposit([(p1, "100.00")], fee="3.20"))
    # the same deposit written again (a retry, or a re-sync) keeps its own payment
    assert ns.upsert("deposit", "po_1", _deposit([(p1, "100.00")], fee="3.20")) == first

    def refused(body: str, eid: str = "po_2") -> dict[str, Any]:
        with pytest.raises(NetSuiteResponseError) as err:
            ns.upsert("deposit", eid, body, replace=["payment", "cashback"])
        assert err.value.status == 400
        return err.value.details[0]

    assert "already been deposited" in refused(_deposit([(p1, "100.00")]))["detail"]
    assert refused(_deposit([(p1, "100.00")]))["o:errorPath"] == "payment.items[0]"
    assert "not in Undeposited Funds" in refused(_deposit([(posted, "7.00")]))["detail"]
    assert "may not be negative" in refused(_deposit([(p2, "5.00")], fee="5.01"))["detail"]
    assert "Invalid Field Value" in refused(_deposit([("99999", "1.00")]))["detail"]
    ns.upsert("deposit", "po_2", _deposit([(p2, "5.00")], fee="5.00"))  # zero is allowed
    assert {r["externalId"] for r in emulator.records("deposit")} == {"po_1", "po_2"}


def test_a_payment_or_credit_memo_may_not_apply_beyond_an_invoice_s_amount_remaining(
    emulator: Pipeline,
) -> None:
    """NetSuite keeps each invoice's amount remaining (Amt. Due): what payments and credit
    memos apply to it may not add up to more than its total. The emulator accepted a second
    full payment, which hid a double payment in the pipeline (issue 12)."""
    ns = client_for(emulator)
    customer = ns.upsert("customer", "cus_D", CUSTOMER)
    lines = [{"item": {"id": "301"}, "quantity": 1, "amount": a} for a in ("60.00", "40.00")]
    body = {"entity": {"id": customer}, "item": {"items": lines}}
    invoice = ns.upsert("invoice", "in_1", json.dumps(body))

    def applying(amount: str, **extra: Any) -> str:
        apply = {"items": [{"doc": {"id": invoice}, "apply": True, "amount": amount}]}
        return json.dumps(
            {"customer": {"id": customer}, "payment": amount, "apply": apply, **extra}
        )

    def refused(rtype: str, eid: str, body: str) -> dict[str, Any]:
        with pytest.raises(NetSuiteResponseError) as err:
            ns.upsert(rtype, eid, body, replace=["apply"])
        assert err.value.status == 400
        return err.value.details[0]

    memo = {"entity": {"id": customer}, "item": {"items": [{"item": {"id": "301"}, "amount": 30}]}}
    memo_apply = {"items": [{"doc": {"id": invoice}, "apply": True, "amount": "30.00"}]}
    ns.upsert("creditMemo", "cn_1", json.dumps({**memo, "apply": memo_apply}))
    ns.upsert("customerPayment", "ch_1", applying("70.00"))
    # written again (a retry, a re-sync): its own earlier application does not count
    ns.upsert("customerPayment", "ch_1", applying("70.00"), replace=["apply"])
    error = refused("customerPayment", "ch_2", applying("0.01"))
    assert error["o:errorCode"] == "USER_ERROR"
    assert error["o:errorPath"] == "apply.items[0].amount"
    assert "exceeds its amount remaining (0.00)" in error["detail"]
    # unapplied, the same payment is fine (the money stays on the customer's account)
    ns.upsert("customerPayment", "ch_2", json.dumps({"customer": {"id": customer}, "payment": 5}))
    second_memo = json.dumps({**memo, "apply": memo_apply})
    assert "remaining (0.00)" in refused("creditMemo", "cn_2", second_memo)["detail"]
    # applied to nothing any more (a voided credit memo), the invoice is open for 30.00 again
    ns.upsert("creditMemo", "cn_1", json.dumps({**memo, "apply": {"items": []}}), replace=["apply"])
    assert "remaining (30.00)" in refused("customerPayment", "ch_3", applying("30.01"))["detail"]
    ns.upsert("customerPayment", "ch_3", applying("30.00"))
    posted = ns.session.post(ns.url("customerPayment"), data=applying("0.01"))  # a create
    assert posted.status_code == 400 and "remaining (0.00)" in posted.text


def test_delete_answers_204_and_an_internal_id_is_never_given_again(emulator: Pipeline) -> None:
    """Oracle's "Deleting a Record Instance": DELETE …/{type}/{id} answers 204, no body."""
    ns = client_for(emulator)
    first = ns.upsert("customer", "cus_D1", CUSTOMER)
    assert ns.internal_id("customer", "cus_D1") == first
    gone = ns.session.delete(ns.url("customer", first))
    assert gone.status_code == 204 and gone.content == b""
    assert ns.internal_id("customer", "cus_D1") is None
    with pytest.raises(NetSuiteResponseError) as missing:
        ns.get("customer", first)
    assert missing.value.status == 404
    assert ns.session.delete(ns.url("customer", "eid:cus_D1")).status_code == 404
    again = ns.upsert("customer", "cus_D1", CUSTOMER)  # written again: a new record
    assert int(again) > int(first)
    # a reference to the deleted id is refused, naming the value and the field
    with pytest.raises(NetSuiteResponseError) as refused:
        ns.upsert(
            "invoice",
            "in_D1",
            json.dumps({"entity": {"id": first}, "item": {"items": [{"item": {"id": "301"}}]}}),
        )
    assert f"Invalid Field Value {first} for the following field: entity" in str(refused.value)
    assert ns.session.delete(ns.url("subsidiary", "1")).status_code == 404  # set-up: kept
