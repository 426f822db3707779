"""NetSuite REST batch operations (asynchronous jobs): the emulator over HTTP, through the client.

Oracle's pages the emulator follows are cited in ``server.py`` (``Emulator.submit_batch`` and
the methods after it): "Batch Operations" (article_0127092747), "REST Web Services Request
Processing" (chapter_161251386312) and its subsections on asynchronous requests, idempotency
keys, polling and results.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
import requests

from ledgerstream.sinks.netsuite_client import (
    COLLECTION_CONTENT_TYPE,
    JobStatus,
    NetSuiteClient,
    NetSuiteResponseError,
)
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.test_netsuite_emulator import behave, client_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

JOB_URL = re.compile(r"^http://127\.0\.0\.1:\d+/services/rest/async/v1/job/\d+$")


def async_stats(pipeline: Pipeline) -> dict[str, Any]:
    stats: dict[str, Any] = pipeline.emulator_stats()["async"]
    return stats


def customers(prefix: str, n: int) -> list[tuple[str, str]]:
    return [
        (f"{prefix}{i}", f'{{"companyName":"Company {i}","subsidiary":{{"id":"1"}}}}')
        for i in range(n)
    ]


def wait_done(ns: NetSuiteClient, job: str, timeout: float = 30) -> JobStatus:
    """Poll the job until NetSuite says it is completed (bounded)."""
    deadline = time.monotonic() + timeout
    status = ns.job_status(job)
    while not status.done:
        assert time.monotonic() < deadline, f"{job} still {status.progress} after {timeout}s"
        time.sleep(0.02)
        status = ns.job_status(job)
    return status


# ----------------------------------------------------------------- results
def test_a_batch_upserts_every_item_and_reports_each_internal_id(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    items = customers("cus_B", 30)
    job = ns.batch_upsert("customer", items, str(uuid.uuid4()))
    assert JOB_URL.match(job)
    status = wait_done(ns, job)
    assert status.progress == "succeeded" and not status.failed
    assert status.start_time and status.end_time and status.start_time <= status.end_time
    results = ns.job_results(job)
    assert list(results) == [eid for eid, _ in items]
    for eid, internal_id in results.items():
        assert isinstance(internal_id, str) and internal_id.isdigit()
        assert ns.internal_id("customer", eid) == internal_id
    assert len(emulator.records("customer")) == 30
    # the same items again update the same records (upsert by externalId)
    again = ns.job_results(
        wait_done(ns, ns.batch_upsert("customer", items, None)).url, [eid for eid, _ in items]
    )
    assert again == results
    stats = async_stats(emulator)
    assert stats["jobs_submitted"] == 2 and stats["items_executed"] == 60
    assert stats["items_succeeded"] == 60 and stats["items_failed"] == 0


def test_an_invalid_item_fails_as_its_single_write_would_and_the_others_succeed(
    emulator: Pipeline,
) -> None:
    ns = client_for(emulator)
    nameless = '{"subsidiary":{"id":"1"}}'  # a company needs companyName
    bad_reference = '{"companyName":"X","subsidiary":{"id":"9999"}}'
    items = [
        *customers("cus_V", 2),
        ("cus_Vnameless", nameless),
        ("cus_Vbadref", bad_reference),
        ("cus V space", '{"companyName":"Y"}'),  # not a REST-safe external id
        *customers("cus_W", 2),
    ]
    job = ns.batch_upsert("customer", items, str(uuid.uuid4()))
    status = wait_done(ns, job)
    assert status.done and status.failed  # some items failed: read each one's result
    results = ns.job_results(job)
    written = {eid: r for eid, r in results.items() if isinstance(r, str)}
    assert sorted(written) == ["cus_V0", "cus_V1", "cus_W0", "cus_W1"]
    for eid, internal_id in written.items():
        assert ns.internal_id("customer", eid) == internal_id
    # each failed item carries exactly what the synchronous upsert of the same body answers
    for eid, body in [
        ("cus_Vnameless", nameless),
        ("cus_Vbadref", bad_reference),
        ("cus V space", '{"companyName":"Y"}'),
    ]:
        failed = results[eid]
        assert isinstance(failed, NetSuiteResponseError)
        with pytest.raises(NetSuiteResponseError) as single:
            ns.upsert("customer", eid, body)
        assert (failed.status, failed.details) == (single.value.status, single.value.details)
        assert failed.status == 400 and failed.permanent
        assert ns.internal_id("customer", eid.replace(" ", "_")) is None
    assert results["cus_Vnameless"].details[0]["o:errorPath"] == "companyName"  # type: ignore[union-attr]
    assert async_stats(emulator)["items_failed"] == 3


# ----------------------------------------------------------------- the protocol, as documented
def test_submit_answers_202_and_the_job_its_tasks_and_results_read_as_documented(
    emulator: Pipeline,
) -> None:
    ns = client_for(emulator)
    behave(emulator, async_processors=0)  # no processor: the job waits in the queue
    body = (
        '{"items":[{"externalId":"cus_P1","companyName":"P1"},'
        '{"externalId":"cus_P2","companyName":"P2"}]}'
    )
    resp = ns.session.put(
        ns.url("customer"),
        data=body,
        headers={"Content-Type": COLLECTION_CONTENT_TYPE, "Prefer": "respond-async"},
    )
    assert resp.status_code == 202 and resp.content == b""
    assert resp.headers["Preference-Applied"] == "respond-async"
    job = resp.headers["Location"]
    assert JOB_URL.match(job)
    pending = ns.read(job.removeprefix(ns.root))
    assert pending == {
        "links": [{"rel": "self", "href": job}],
        "completed": False,
        "id": job.rsplit("/", 1)[1],
        "progress": "pending",
        "task": {"links": [{"rel": "self", "href": f"{job}/task"}]},
    }
    tasks = ns.read(f"{job.removeprefix(ns.root)}/task")
    assert [t["id"] for t in tasks["items"]] == ["1", "2"]
    assert tasks["totalResults"] == 2 and tasks["hasMore"] is False
    assert tasks["items"][0]["links"] == [{"rel": "self", "href": f"{job}/task/1"}]
    with pytest.raises(NetSuiteResponseError) as err:  # no result before the task ran
        ns.read(f"{job.removeprefix(ns.root)}/task/1/result")
    assert err.value.status == 404
    assert emulator.records("customer") == []
    assert async_stats(emulator)["jobs_queued"] == 1
    behave(emulator, async_processors=1)  # a processor takes the queued job
    assert wait_done(ns, job).progress == "succeeded"
    task = ns.read(f"{job.removeprefix(ns.root)}/task/2/")
    assert task["completed"] is True and task["progress"] == "succeeded" and task["id"] == "2"
    assert task["links"] == [
        {"rel": "related", "href": f"{job}/task/2/result"},
        {"rel": "self", "href": f"{job}/task/2"},
    ]
    assert task["startTime"] <= task["endTime"]
    result = ns.read(f"{job.removeprefix(ns.root)}/task/2/result")
    record = ns.get("customer", "eid:cus_P2")
    assert result == {
        "links": [{"rel": "self", "href": ns.url("customer", record["id"])}],
        "id": record["id"],
        "externalId": "cus_P2",
    }
    assert ns.job_results(job, ["cus_P1", "cus_P2"]) == {
        "cus_P1": ns.internal_id("customer", "cus_P1"),
        "cus_P2": record["id"],
    }
    with pytest.raises(NetSuiteResponseError) as err:
        ns.job_status("987654")
    assert err.value.status == 404


def test_a_batch_without_prefer_respond_async_or_over_100_items_is_refused(
    emulator: Pipeline,
) -> None:
    ns = client_for(emulator)
    resp = ns.session.put(
        ns.url("customer"),
        data='{"items":[{"externalId":"cus_N1","companyName":"N"}]}',
        headers={"Content-Type": COLLECTION_CONTENT_TYPE},
    )
    assert resp.status_code == 400 and resp.json()["o:errorDetails"][0]["detail"]
    key = str(uuid.uuid4())
    with pytest.raises(NetSuiteResponseError) as err:
        ns.batch_upsert("customer", customers("cus_O", 101), key)
    assert err.value.status == 400 and err.value.permanent
    assert err.value.details[0]["o:errorPath"] == "items"
    assert "at most 100" in err.value.details[0]["detail"]
    assert async_stats(emulator)["jobs_submitted"] == 0
    # a refused request does not use up its idempotency key; 100 items are accepted
    job = ns.batch_upsert("customer", customers("cus_O", 100), key)
    wait_done(ns, job)
    assert len(emulator.records("customer")) == 100


# ----------------------------------------------------------------- idempotency
def test_a_repeated_idempotency_key_answers_the_first_job_and_runs_nothing_again(
    emulator: Pipeline,
) -> None:
    ns = client_for(emulator)
    items = customers("cus_I", 5)
    key = str(uuid.uuid4())
    job = ns.batch_upsert("customer", items, key)
    assert ns.batch_upsert("customer", items, key) == job
    # as Oracle shows it: 400 "Conflict", IDEMPOTENCY_ERROR, Location of the earlier job --
    # whatever the body (here another record altogether)
    resp = ns.session.put(
        ns.url("customer"),
        data='{"items":[{"externalId":"cus_Iother","companyName":"Other"}]}',
        headers={
            "Content-Type": COLLECTION_CONTENT_TYPE,
            "Prefer": "respond-async",
            "X-NetSuite-Idempotency-Key": key,
        },
    )
    assert resp.status_code == 400 and resp.headers["Location"] == job
    assert resp.json()["title"] == "Conflict"
    assert resp.json()["o:errorDetails"][0]["o:errorCode"] == "IDEMPOTENCY_ERROR"
    wait_done(ns, job)
    assert set(ns.job_results(job)) == {eid for eid, _ in items}
    stats = async_stats(emulator)
    assert stats["jobs_submitted"] == 1 and stats["jobs_repeated"] == 2
    assert stats["items_executed"] == 5
    assert sorted(r["externalId"] for r in emulator.records("customer")) == [
        eid for eid, _ in items
    ]
    with pytest.raises(NetSuiteResponseError) as err:
        ns.batch_upsert("customer", items, "not-a-uuid")
    assert err.value.status == 400


def test_a_lost_submit_answer_is_retried_safely_with_the_same_key(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    items = customers("cus_D", 4)
    key = str(uuid.uuid4())
    behave(emulator, drop_after_commit_rate=1.0)  # the job is queued, its answer is lost
    with pytest.raises(requests.ConnectionError):
        ns.batch_upsert("customer", items, key)
    behave(emulator, drop_after_commit_rate=0.0)
    job = ns.batch_upsert("customer", items, key)
    wait_done(ns, job)
    assert all(isinstance(r, str) for r in ns.job_results(job).values())
    stats = emulator.emulator_stats()
    assert stats["faults"] == {"drop": 1} and stats["requests"]["PUT dropped"] == 1
    assert stats["async"]["jobs_submitted"] == 1 and stats["async"]["items_executed"] == 4
    assert len(emulator.records("customer")) == 4


# ----------------------------------------------------------------- requests, faults, auth
def test_submit_and_polls_are_requests_subject_to_injected_faults(emulator: Pipeline) -> None:
    ns = client_for(emulator)
    behave(emulator, error_rates={"503": 1.0})
    with pytest.raises(NetSuiteResponseError) as err:
        ns.batch_upsert("customer", customers("cus_F", 3), str(uuid.uuid4()))
    assert err.value.status == 503 and async_stats(emulator)["jobs_submitted"] == 0
    behave(emulator, error_rates={}, async_processors=0)
    job = ns.batch_upsert("customer", customers("cus_F", 3), str(uuid.uuid4()))
    behave(emulator, spurious_401_rate=1.0)
    with pytest.raises(NetSuiteResponseError) as err:
        ns.job_status(job)
    assert err.value.status == 401
    behave(emulator, spurious_401_rate=0.0, async_processors=2)
    wait_done(ns, job)
    behave(emulator, error_rates={"429": 1.0})  # a throttled result read is raised, not filed
    with pytest.raises(NetSuiteResponseError) as err:
        ns.job_results(job)
    assert err.value.status == 429
    behave(emulator, error_rates={})
    assert len(ns.job_results(job)) == 3
    requests_seen = emulator.emulator_stats()["requests"]
    assert requests_seen["PUT 503"] == 1 and requests_seen["PUT 202"] == 1
    assert requests_seen["ASYNC 401"] == 1 and requests_seen["ASYNC 429"] >= 1
    assert requests_seen["ASYNC 200"] >= 2 and "PUT 204" not in requests_seen


def test_batches_work_with_oauth2_machine_to_machine(emulator: Pipeline) -> None:
    ns = client_for(emulator, netsuite_auth="m2m")
    job = ns.batch_upsert("customer", customers("cus_M", 3), str(uuid.uuid4()))
    wait_done(ns, job)
    results = ns.job_results(job)
    assert results == {eid: ns.internal_id("customer", eid) for eid in results}
    assert emulator.emulator_stats()["tokens_issued"] == 1


# ----------------------------------------------------------------- REST async processors
@pytest.mark.parametrize("processors", [1, 2])
def test_jobs_queue_first_in_first_out_behind_the_processors(
    emulator: Pipeline, processors: int
) -> None:
    ns = client_for(emulator)
    behave(emulator, async_processors=processors, async_item_ms=100)
    jobs = [
        ns.batch_upsert("customer", customers(f"cus_Q{j}_", 3), str(uuid.uuid4())) for j in range(3)
    ]
    deadline = time.monotonic() + 30
    while not all(ns.job_status(job).done for job in jobs):
        assert async_stats(emulator)["jobs_running"] <= processors
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stats = async_stats(emulator)
    # three jobs of 300 ms submitted within a few ms: as many run at once as there are
    # processors, never more
    assert stats["max_jobs_running"] == processors
    assert stats["jobs_completed"] == 3 and stats["items_executed"] == 9
    status = [ns.job_status(job) for job in jobs]
    assert all(s.start_time and s.end_time for s in status)
    # first in, first out: the third job starts only once a processor is free, i.e. once
    # 3 - processors of the two earlier jobs have ended
    earlier_ends = sorted(str(s.end_time) for s in status[:2])
    assert str(status[2].start_time) >= earlier_ends[2 - processors]
    if processors == 1:
        assert str(status[1].start_time) >= str(status[0].end_time)
    # within a job, the items run one after the other, in the order submitted
    job = jobs[0].removeprefix(ns.root)
    tasks = [ns.read(f"{job}/task/{i}") for i in (1, 2, 3)]
    assert tasks[0]["endTime"] <= tasks[1]["startTime"]
    assert tasks[1]["endTime"] <= tasks[2]["startTime"]
