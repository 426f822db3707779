"""The client's batch methods against canned NetSuite answers (no server)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from ledgerstream.settings import NetSuiteSettings
from ledgerstream.sinks.netsuite_client import (
    COLLECTION_CONTENT_TYPE,
    JobStatus,
    NetSuiteBatchError,
    NetSuiteClient,
    NetSuiteResponseError,
    _batch_item,
)

ROOT = "https://123456-sb1.suitetalk.api.netsuite.com"
JOB = f"{ROOT}/services/rest/async/v1/job/7"


def answer(
    url: str, status: int, body: Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.url = url
    resp.reason = "canned"
    resp._content = b"" if body is None else json.dumps(body).encode()
    resp.headers = CaseInsensitiveDict(headers or {})
    resp.request = requests.Request("GET", url).prepare()
    return resp


class Session:
    """Answers by URL (without the query string); records what was sent."""

    def __init__(self, answers: dict[str, requests.Response]):
        self.answers = answers
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def _answer(self, method: str, url: str, **kw: Any) -> requests.Response:
        self.sent.append((method, url, kw))
        offset = (kw.get("params") or {}).get("offset")
        return self.answers[f"{url}?offset={offset}" if offset else url]

    def put(self, url: str, **kw: Any) -> requests.Response:
        return self._answer("PUT", url, **kw)

    def get(self, url: str, **kw: Any) -> requests.Response:
        return self._answer("GET", url, **kw)


def client(answers: dict[str, requests.Response]) -> tuple[NetSuiteClient, Session]:
    cfg = NetSuiteSettings(
        netsuite_account_id="123456_SB1",
        netsuite_auth="tba",
        netsuite_consumer_key="ck",
        netsuite_consumer_secret="cs",
        netsuite_token_id="ti",
        netsuite_token_secret="ts",
        netsuite_base_url=None,
    )
    ns = NetSuiteClient(cfg)
    session = Session(answers)
    ns.session = session  # type: ignore[assignment]
    return ns, session


ERROR_400 = {
    "title": "Bad Request",
    "status": 400,
    "o:errorDetails": [
        {"detail": "Please enter value(s) for: companyName", "o:errorCode": "USER_ERROR"}
    ],
}


def test_an_item_keeps_its_numbers_exact_and_carries_its_external_id() -> None:
    item = _batch_item("cus_1", '{"companyName":"A","balance":1234567.10}')
    assert item == {"companyName": "A", "balance": Decimal("1234567.10"), "externalId": "cus_1"}
    assert _batch_item("cus_2", {"externalId": "cus_2"}) == {"externalId": "cus_2"}
    with pytest.raises(ValueError, match="names externalId"):
        _batch_item("cus_3", '{"externalId":"other"}')
    with pytest.raises(ValueError, match="not a JSON object"):
        _batch_item("cus_4", "[1]")


def test_batch_upsert_sends_a_collection_and_returns_the_job_url() -> None:
    url = f"{ROOT}/services/rest/record/v1/customer"
    # Oracle's example Location is a path: the client makes it absolute
    ns, session = client(
        {url: answer(url, 202, headers={"Location": "/services/rest/async/v1/job/7"})}
    )
    job = ns.batch_upsert("customer", [("cus_1", '{"companyName":"A"}')], "key-1", ["item"])
    assert job == JOB
    method, sent_url, kw = session.sent[0]
    assert (method, sent_url) == ("PUT", url) and kw["params"] == {"replace": "item"}
    assert kw["headers"] == {
        "Content-Type": COLLECTION_CONTENT_TYPE,
        "Prefer": "respond-async",
        "X-NetSuite-Idempotency-Key": "key-1",
    }
    assert json.loads(kw["data"]) == {"items": [{"companyName": "A", "externalId": "cus_1"}]}


def test_a_repeated_key_returns_the_earlier_job_and_other_refusals_raise() -> None:
    url = f"{ROOT}/services/rest/record/v1/customer"
    conflict = {
        "title": "Conflict",
        "status": 400,
        "o:errorDetails": [{"detail": "already submitted", "o:errorCode": "IDEMPOTENCY_ERROR"}],
    }
    ns, _ = client({url: answer(url, 400, conflict, {"Location": JOB})})
    assert ns.batch_upsert("customer", [("cus_1", "{}")], "key-1") == JOB
    ns, _ = client({url: answer(url, 400, ERROR_400)})
    with pytest.raises(NetSuiteResponseError) as err:
        ns.batch_upsert("customer", [("cus_1", "{}")], "key-1")
    assert err.value.status == 400 and err.value.permanent


def test_job_url_and_status() -> None:
    ns, _ = client({JOB: answer(JOB, 200, {"id": "7", "progress": "failed", "completed": True})})
    assert ns.job_url("7") == ns.job_url("/services/rest/async/v1/job/7") == ns.job_url(JOB) == JOB
    status = ns.job_status("7")
    assert status == JobStatus(url=JOB, id="7", progress="failed", completed=True)
    assert status.done and status.failed
    assert not JobStatus(JOB, "7", "processing", False).done


def test_job_results_map_tasks_to_items_in_order_across_pages() -> None:
    tasks = f"{JOB}/task"

    def task(n: int) -> dict[str, Any]:
        return {"id": str(n), "links": [{"rel": "self", "href": f"{tasks}/{n}"}]}

    record = f"{ROOT}/services/rest/record/v1/customer"
    ns, _ = client(
        {
            # listed out of order, over two pages
            tasks: answer(tasks, 200, {"items": [task(2), task(1)], "hasMore": True}),
            f"{tasks}?offset=2": answer(tasks, 200, {"items": [task(3)], "hasMore": False}),
            f"{tasks}/1/result": answer(
                tasks, 200, {"links": [{"rel": "self", "href": f"{record}/41"}]}
            ),
            f"{tasks}/2/result": answer(tasks, 400, ERROR_400),
            f"{tasks}/2": answer(tasks, 200, {"id": "2", "progress": "failed", "completed": True}),
            # a result that names its externalId is filed under it
            f"{tasks}/3/result": answer(tasks, 200, {"id": "43", "externalId": "cus_named"}),
        }
    )
    results = ns.job_results(JOB, ["cus_a", "cus_b", "cus_c"])
    assert results["cus_a"] == "41" and results["cus_named"] == "43"
    failed = results["cus_b"]
    assert isinstance(failed, NetSuiteResponseError)
    assert failed.status == 400 and failed.details == ERROR_400["o:errorDetails"]
    with pytest.raises(NetSuiteBatchError, match="3 tasks for 2"):
        ns.job_results(JOB, ["cus_a", "cus_b"])
    with pytest.raises(NetSuiteBatchError, match="pass external_ids"):
        ns.job_results(JOB)


def test_a_refused_result_read_of_a_task_that_succeeded_is_raised() -> None:
    tasks = f"{JOB}/task"
    ns, _ = client(
        {
            tasks: answer(tasks, 200, {"items": [{"id": "1"}], "hasMore": False}),
            f"{tasks}/1/result": answer(tasks, 429, {"title": "Too Many Requests", "status": 429}),
            f"{tasks}/1": answer(tasks, 200, {"id": "1", "progress": "succeeded"}),
        }
    )
    with pytest.raises(NetSuiteResponseError) as err:
        ns.job_results(JOB, ["cus_a"])
    assert err.value.status == 429
