"""HTTP front of the NetSuite REST emulator.

What it does as NetSuite does:
- URL shape ``/services/rest/record/v1/{recordType}[/{id}|/eid:{externalId}]``;
- OAuth 1.0a token-based auth, HMAC-SHA256 with ``realm`` = account id, verified with oauthlib:
  a wrong key, token or signature gets 401 ``INVALID_LOGIN``;
- OAuth 2.0 machine-to-machine: ``POST /services/rest/auth/oauth2/v1/token`` takes a
  client-credentials grant with a JWT client assertion (``kid`` = certificate id, ``iss`` =
  client id, ``aud`` = the token URL, ``scope``, at most an hour long), verified with joserfc
  against the certificate's public key; it returns a bearer token valid ``token_ttl_s``;
- a concurrency limit per account: requests beyond it get 429 at once;
- ``GET /services/rest/system/v1/governanceLimits`` answers the account's and the integration's
  concurrency limits in the shape Oracle documents for the REST governanceLimits operation
  (https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/article_0625010817.html):
  ``accountConcurrencyLimit``, ``accountUnallocatedConcurrencyLimit``, ``integrationLimitType``
  (``integrationSpecific`` with ``integrationConcurrencyLimit``, or ``accountLimit`` when no limit
  is allocated to the integration); see ``Behaviour`` for where the figures come from;
- the set-up records (subsidiary, currencies, accounts with ``acctType``, payment method, items)
  are read with ``GET …/{type}/{id}`` under their REST record ids (``subsidiary``, ``currency``,
  ``account``, ``paymentMethod``, ``serviceSaleItem``, ``discountItem``…): a record asked for
  under another type is 404, as on NetSuite;
- latency (log-normal around a median) and injected faults: error statuses at given rates
  (nothing written), spurious 401 ``INVALID_LOGIN``, and "commit, then drop the connection";
- SuiteQL (``POST /services/rest/query/v1/suiteql``, ``Prefer: transient``), only the query
  the sink's link mode sends: ``SELECT id FROM <type> WHERE LOWER(TRIM(<field>)) = '<v>'``
  (any field, custom ones too; field names not case-sensitive, as in SuiteQL);
- deposits: each ``payment`` line must be a customer payment or refund posted to Undeposited
  Funds and not already in another deposit, and the deposit total may not be negative;
- an invoice's amount remaining (Amt. Due) is its total less what customer payments and credit
  memos apply to it: NetSuite's customer payment "decreases the amount due" of the invoices it
  applies to (Oracle's Customer Payment record, section_N3193748 and, for REST,
  article_0224093711), and a payment or credit memo that would apply more than an invoice's
  amount remaining is refused with 400 ``USER_ERROR`` on its ``apply.items[n].amount`` (the
  check is NetSuite's; the wording of the message is ours, Oracle does not publish it);
- ``PUT …/eid:{externalId}`` creates or updates (upsert); ``POST`` creates; both answer
  **204 No Content** with the record URL in ``Location``; ``GET`` reads; a record-type ``GET``
  lists ids with ``limit``/``offset`` paging; ``DELETE`` deletes (204), and an internal id is
  never given again;
- external ids only of letters, digits, ``_`` and ``-``;
- references ``{"id": …}`` must name existing records of the right type, else 400 with
  ``o:errorDetails`` (``detail``, ``o:errorCode``, ``o:errorPath``);
- on update, a sublist is replaced only when named in ``?replace=``, otherwise its lines are
  added to the existing ones (so a client that forgets ``replace`` duplicates lines, as it would
  on NetSuite).

- batch operations (asynchronous): ``PUT`` (upsert by each item's ``externalId``) or
  ``POST`` (create) on ``…/{recordType}`` with ``Content-Type: application/vnd.oracle.resource+
  json; type=collection``, ``Prefer: respond-async`` and ``{"items": [...]}`` (at most 100)
  answer 202 with the job in ``Location``; the job, its tasks and their results are read under
  ``/services/rest/async/v1/job/{id}[/task[/{taskId}[/result]]]``; ``X-NetSuite-idempotency-
  key`` makes a repeat answer 400 ``IDEMPOTENCY_ERROR`` with the first job's ``Location``; the
  items run in the background in ``async_processors`` REST async processors, each item taking
  ``async_item_ms`` (see ``Emulator.submit_batch`` and the Oracle pages cited there).

Not NetSuite: ``GET /_emulator/records`` lists stored records in full, ``POST /_emulator/reset``
empties the store, ``GET|POST /_emulator/behaviour`` reads or changes latency, limit and faults,
``GET /_emulator/stats`` counts requests by outcome (tests, benchmarks and the demo use them).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from ledgerstream.testing.netsuite_emulator.store import Record, Store, dumps, loads

log = logging.getLogger(__name__)

ROOT = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
GOVERNANCE_PATH = "/services/rest/system/v1/governanceLimits"
ASYNC_ROOT = "/services/rest/async/v1"
# …/job/{id}, …/job/{id}/task[/], …/job/{id}/task/{taskId}, …/job/{id}/task/{taskId}/result
ASYNC_PATH = re.compile(
    r"^/services/rest/async/v1/job/([^/]+)(?:/(task)(?:/([^/]+)(/result)?)?)?/?$"
)
# Oracle, "Batch Operations" (https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/
# article_0127092747.html): "You can currently work with a maximum of 100 records in one batch
# request."
BATCH_MAX_ITEMS = 100
# the one SuiteQL shape the sink sends (link mode's customer match)
MATCH_QUERY = re.compile(
    r"^\s*SELECT\s+id\s+FROM\s+(\w+)\s+WHERE\s+LOWER\(TRIM\((\w+)\)\)\s*=\s*"
    r"'((?:[^']|'')*)'\s+ORDER\s+BY\s+id\s*$",
    re.IGNORECASE,
)
# the sink's lookup of the records a batch wrote: internal ids by external id, from the
# customer table or from transaction, filtered by its type id (SuiteQL names transactions by
# type ids: CustInvc, CustPymt, CustCred, CustRfnd, Deposit)
EXTERNAL_IDS_QUERY = re.compile(
    r"^\s*SELECT\s+id\s*,\s*externalid\s+FROM\s+(customer|transaction)\s+WHERE\s+"
    r"(?:type\s*=\s*'(\w+)'\s+AND\s+)?externalid\s+IN\s*\(((?:\s*'(?:[^']|'')*'\s*,?)+)\)"
    r"\s*$",
    re.IGNORECASE,
)
SUITEQL_TRANSACTION_TYPES = {
    "CustInvc": "invoice",
    "CustPymt": "customerPayment",
    "CustCred": "creditMemo",
    "CustRfnd": "customerRefund",
    "Deposit": "deposit",
}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ITEM_TYPES = ("serviceSaleItem", "discountItem", "nonInventorySaleItem", "otherChargeSaleItem")
TRANSACTION_TYPES = ("invoice", "customerPayment", "creditMemo", "customerRefund")
APPLY_TO_INVOICES = ("customerPayment", "creditMemo")  # records whose apply lines pay invoices


@dataclass(frozen=True)
class RecordRules:
    """What the emulator validates for one record type."""

    refs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path -> allowed types
    required: tuple[str, ...] = ()
    sublists: tuple[str, ...] = ()


_COMMON = {
    "subsidiary": ("subsidiary",),
    "currency": ("currency",),
}
RULES: dict[str, RecordRules] = {
    "customer": RecordRules(refs=dict(_COMMON), required=("companyName",)),
    "invoice": RecordRules(
        refs={**_COMMON, "entity": ("customer",), "item.items[].item": ITEM_TYPES},
        required=("entity", "item"),
        sublists=("item",),
    ),
    "customerPayment": RecordRules(
        refs={
            **_COMMON,
            "customer": ("customer",),
            "account": ("account",),
            "paymentMethod": ("paymentMethod",),
            "apply.items[].doc": ("invoice", "creditMemo"),
        },
        required=("customer", "payment"),
        sublists=("apply",),
    ),
    "creditMemo": RecordRules(
        refs={
            **_COMMON,
            "entity": ("customer",),
            "createdFrom": ("invoice",),
            "item.items[].item": ITEM_TYPES,
            "apply.items[].doc": ("invoice",),
        },
        required=("entity", "item"),
        sublists=("item", "apply"),
    ),
    "customerRefund": RecordRules(
        refs={
            **_COMMON,
            "customer": ("customer",),
            "account": ("account",),
            "paymentMethod": ("paymentMethod",),
            "apply.items[].doc": ("creditMemo", "customerPayment"),
        },
        required=("customer",),
        sublists=("apply",),
    ),
    "deposit": RecordRules(
        refs={
            **_COMMON,
            "account": ("account",),
            "payment.items[]": ("customerPayment", "customerRefund"),
            "other.items[].account": ("account",),
            "cashback.items[].account": ("account",),
        },
        required=("account",),
        sublists=("payment", "other", "cashback"),
    ),
    "serviceSaleItem": RecordRules(required=("itemId",)),
    "discountItem": RecordRules(required=("itemId",)),
    "nonInventorySaleItem": RecordRules(required=("itemId",)),
    "otherChargeSaleItem": RecordRules(required=("itemId",)),
    "journalEntry": RecordRules(sublists=("line",)),
    # set-up records (seeded, see store.py), under their REST record ids: subsidiary
    # (section_157607424766), paymentMethod (article_1207013221) in Oracle's NetSuite help
    "subsidiary": RecordRules(required=("name",)),
    "currency": RecordRules(required=("symbol",)),
    "account": RecordRules(required=("acctName", "acctType")),
    "paymentMethod": RecordRules(required=("name",)),
}


RFC2616 = "https://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html"


class NetSuiteError(Exception):
    def __init__(self, status: int, code: str, detail: str, path: str | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.path = status, code, detail, path

    def response(self) -> web.Response:
        titles = {
            400: "Bad Request",
            401: "Unauthorized",
            404: "Not Found",
            405: "Method Not Allowed",
            429: "Too Many Requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        item: dict[str, Any] = {"detail": self.detail, "o:errorCode": self.code}
        if self.path:
            item["o:errorPath"] = self.path
        body = {
            "type": f"{RFC2616}#sec10.4.{self.status - 399}",
            "title": titles.get(self.status, "Error"),
            "status": self.status,
            "o:errorDetails": [item],
        }
        return web.Response(
            status=self.status,
            text=dumps(body),
            content_type="application/vnd.oracle.resource+json",
            headers={"Content-Language": "en"},
        )


INVALID_LOGIN = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)


@dataclass
class Credentials:
    """What the account accepts: a TBA token, and/or an OAuth 2.0 client with a certificate."""

    account: str
    consumer_key: str | None = None
    consumer_secret: str | None = None
    token_id: str | None = None
    token_secret: str | None = None
    client_id: str | None = None
    certificate_id: str | None = None
    public_key_pem: str | None = None


@dataclass
class Behaviour:
    """Latency, concurrency limit and faults (changeable at run time).

    ``governanceLimits`` reports ``concurrency_limit`` as the account's limit when one is
    enforced, else ``account_concurrency_limit``: reported, not enforced (tests and benchmarks
    run above it). Its default, 5, is the base limit of an account on the Standard service tier
    without SuiteCloud Plus licences, each of which adds 10 (Oracle's example: "standard service
    tier and one SuiteCloud Plus license ... limit ... is 15 (5+10)",
    https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_1525253248.html).
    ``integration_concurrency_limit`` > 0 is a limit allocated to the integration
    (``integrationSpecific``; the account's unallocated limit shrinks by it); 0 = none allocated
    (``accountLimit``).
    """

    concurrency_limit: int = 0  # enforced: 0 = no limit
    account_concurrency_limit: int = 5
    integration_concurrency_limit: int = 0
    latency_ms: float = 0.0  # median
    latency_sigma: float = 0.0  # log-normal shape; 0 = always the median
    error_rates: dict[str, float] = field(default_factory=dict)  # status -> share, before writing
    spurious_401_rate: float = 0.0
    drop_after_commit_rate: float = 0.0  # a write commits, then the connection is closed
    token_ttl_s: int = 3600
    seed: int | None = None
    # every request answered 401 INVALID_LOGIN for this many seconds from when it is set (what
    # an account under load sends in bursts, with valid credentials); 0 = no burst
    spurious_401_burst_s: float = 0.0
    # REST async processors: asynchronous REST jobs "are handled within REST Async Processors,
    # according to the number of SuiteCloud Plus licenses" (Oracle, "REST Web Services Request
    # Processing", https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/
    # chapter_161251386312.html). Oracle does not publish how many an account has: 2 is our
    # choice. 0 = none: jobs are queued ("pending") until processors are added. Also set from
    # LEDGER_EMULATOR_ASYNC_PROCESSORS when the emulator is served (see ``serve``).
    async_processors: int = 2
    # the time one batch item takes in a processor (ms); None = drawn like a request's latency
    # (latency_ms, latency_sigma). Also LEDGER_EMULATOR_ASYNC_ITEM_MS.
    async_item_ms: float | None = None

    def item_s(self, rng: random.Random) -> float:
        """The processing time of one batch item."""
        if self.async_item_ms is None:
            return self.latency_s(rng)
        return max(self.async_item_ms, 0.0) / 1000

    def latency_s(self, rng: random.Random) -> float:
        if self.latency_ms <= 0:
            return 0.0
        factor = rng.lognormvariate(0.0, self.latency_sigma) if self.latency_sigma else 1.0
        return self.latency_ms * factor / 1000

    def draw(self, rng: random.Random) -> str | None:
        """One fault for one request, or None: "<status>", "401" (spurious) or "drop"."""
        u = rng.random()
        for status, rate in [*self.error_rates.items(), ("401", self.spurious_401_rate)]:
            if u < rate:
                return status
            u -= rate
        return "drop" if u < self.drop_after_commit_rate else None


ERROR_TEXT = {
    "429": ("CONCURRENCY_LIMIT_EXCEEDED", "Concurrent request limit exceeded. Request blocked."),
    "500": ("UNEXPECTED_ERROR", "An unexpected error occurred."),
    "503": ("SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
    "400": ("USER_ERROR", "Injected validation error."),
}


class DroppedResponse(Exception):
    """The write committed; the client gets a closed connection instead of an answer."""


def _now_iso() -> str:
    """Oracle's examples show ``2020-12-09T12:04:40Z``; we add milliseconds (still ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_batch(request: web.Request) -> bool:
    """A batch request: ``Content-Type: application/vnd.oracle.resource+json; type=collection``
    (Oracle, "Batch Operations", article_0127092747: that content type for POST, PATCH and PUT,
    together with ``Prefer: respond-async``)."""
    content_type = request.headers.get("Content-Type", "").replace(" ", "").lower()
    return "type=collection" in content_type.split(";")[1:]


@dataclass
class AsyncTask:
    """One item of a batch job: the task that writes one record.

    Oracle documents a job's tasks and each task's result (``…/job/{id}/task``,
    ``…/task/{taskId}``, ``…/task/{taskId}/result``: "Polling for the Status of a Completed
    Asynchronous Request", subsect_161252896355, and "Getting the Result of an Executed
    Request", subsect_161252889998), but not how a batch maps onto tasks: here each item is one
    task, numbered from 1 in the order of ``items``."""

    id: int
    body: dict[str, Any]
    progress: str = "pending"  # pending, processing, succeeded, failed
    start: str | None = None
    end: str | None = None
    record: Record | None = None
    error: NetSuiteError | None = None

    @property
    def completed(self) -> bool:
        return self.progress in ("succeeded", "failed")


@dataclass
class AsyncJob:
    """A batch request queued for the REST async processors (``…/async/v1/job/{id}``)."""

    id: int
    rtype: str
    method: str
    replace: set[str]
    tasks: list[AsyncTask]
    key: str | None
    progress: str = "pending"  # pending, processing, succeeded, failed
    start: str | None = None
    end: str | None = None

    @property
    def completed(self) -> bool:
        return self.progress in ("succeeded", "failed")


def verify_oauth1(request: web.Request, body: bytes, creds: Credentials) -> None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("OAuth ") or not creds.consumer_secret or not creds.token_secret:
        raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN)
    params = dict(
        oauth_signature.collect_parameters(
            headers={"Authorization": header}, with_realm=True, exclude_oauth_signature=False
        )
    )
    ok = (
        params.get("realm") == creds.account
        and params.get("oauth_consumer_key") == creds.consumer_key
        and params.get("oauth_token") == creds.token_id
        and params.get("oauth_signature_method") == "HMAC-SHA256"
    )
    if ok:
        oreq = OAuthRequest(
            str(request.url), request.method, body=None, headers={"Authorization": header}
        )
        oreq.params = [
            *oauth_signature.collect_parameters(
                uri_query=request.url.raw_query_string,
                headers={"Authorization": header},
                exclude_oauth_signature=True,
            ),
        ]
        oreq.signature = params.get("oauth_signature", "")
        ok = oauth_signature.verify_hmac_sha256(oreq, creds.consumer_secret, creds.token_secret)
    if not ok:
        raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN)


def _walk(body: Any, path: list[str], trail: str = "") -> list[tuple[str, Any]]:
    """Values at a rules path like ``apply.items[].doc``, with NetSuite-style error paths."""
    if not path:
        return [(trail, body)]
    head, rest = path[0], path[1:]
    if not isinstance(body, dict) or head.rstrip("[]") not in body:
        return []
    value = body[head.rstrip("[]")]
    name = f"{trail}.{head.rstrip('[]')}" if trail else head.rstrip("[]")
    if head.endswith("[]"):
        if not isinstance(value, list):
            return []
        out: list[tuple[str, Any]] = []
        for i, item in enumerate(value):
            out += _walk(item, rest, f"{name}[{i}]")
        return out
    return _walk(value, rest, name)


class Emulator:
    def __init__(self, store: Store, creds: Credentials, behaviour: Behaviour | None = None):
        self.store = store
        self.creds = creds
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.tokens: dict[str, float] = {}  # bearer token -> expiry (monotonic)
        self.tokens_issued = 0
        self.first_write: float | None = None  # wall-clock time of the first accepted write
        self.last_write: float | None = None
        self.public_key = _public_key(creds.public_key_pem) if creds.public_key_pem else None
        # asynchronous (batch) jobs: ids never given again, not even after a reset
        self.jobs: dict[int, AsyncJob] = {}
        self.job_keys: dict[str, int] = {}  # X-NetSuite-idempotency-key -> job id
        self.job_queue: deque[AsyncJob] = deque()
        self.running: dict[int, asyncio.Task[None]] = {}  # job id -> its processor's task
        self.async_counts: Counter[str] = Counter()
        self.max_jobs_running = 0
        self._next_job = 1
        self.set_behaviour(behaviour or Behaviour())
        self._deposited: dict[int, str] | None = None  # payment internal id -> deposit eid
        # invoice internal id -> {(type, external id or #internal id) of a payment or credit
        # memo: the amount it applies to that invoice}
        self._applied: dict[int, dict[tuple[str, str], Decimal]] | None = None
        self._applies_to: dict[tuple[str, str], set[int]] = {}  # the same, by record

    def set_behaviour(self, behaviour: Behaviour) -> None:
        # a burst is a one-shot action: armed now, not again by a later change
        self.burst_until = time.monotonic() + behaviour.spurious_401_burst_s
        self.behaviour = replace(behaviour, spurious_401_burst_s=0.0)
        self.rng = random.Random(behaviour.seed)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # constructing: no loop yet, and no job either
            return
        self._pump()  # more processors may take queued jobs now

    # ----------------------------------------------------------------- validation
    def validate(self, rtype: str, body: dict[str, Any], creating: bool) -> None:
        rules = RULES[rtype]
        if creating:
            required = rules.required
            if rtype == "customer" and body.get("isPerson") is True:
                # an individual needs a first and a last name instead of a company name
                # (SuiteTalk's customer: companyName is required when isPerson is false,
                # firstName and lastName when it is true; as listed in Breadwinner's NetSuite
                # customer reference, docs.breadwinner.com/netsuite/customer — we found no
                # Oracle page that states it, NetSuite's UI asks the same)
                required = ("firstName", "lastName")
            for name in required:
                if body.get(name) in (None, "", {}):
                    raise NetSuiteError(
                        400, "USER_ERROR", f"Please enter value(s) for: {name}", name
                    )
        for path, types in rules.refs.items():
            for where, ref in _walk(body, path.split(".")):
                rid = ref.get("id") if isinstance(ref, dict) else None
                if rid is None:
                    raise NetSuiteError(
                        400,
                        "INVALID_CONTENT",
                        f"Reference {where} must be an object with an id",
                        where,
                    )
                if not str(rid).isdigit() or not self.store.exists(types, int(rid)):
                    field_name = where.rsplit(".", 1)[-1].split("[")[0]
                    raise NetSuiteError(
                        400,
                        "INVALID_CONTENT",
                        f"Error while accessing a resource. Invalid Field Value {rid} for the "
                        f"following field: {field_name}",
                        where,
                    )

    def deposited(self) -> dict[int, str]:
        if self._deposited is None:
            self._deposited = {}
            for dep in self.store.list("deposit"):
                for pid in _payment_ids(dep.fields):
                    self._deposited[pid] = dep.external_id or str(dep.id)
        return self._deposited

    def validate_deposit(self, eid: str, fields: dict[str, Any]) -> None:
        """As NetSuite: only undeposited payments/refunds, once each; total not negative."""
        total = Decimal(0)
        for i, line in enumerate((fields.get("payment") or {}).get("items", [])):
            where = f"payment.items[{i}]"
            pid = int(line["id"])
            record = self.store.get("customerPayment", pid) or self.store.get("customerRefund", pid)
            assert record is not None  # the reference rules checked it exists
            if not self._undeposited_funds(record):
                raise NetSuiteError(
                    400,
                    "INVALID_CONTENT",
                    f"Transaction {pid} is not in Undeposited Funds and cannot be deposited.",
                    where,
                )
            owner = self.deposited().get(pid)
            if owner is not None and owner != eid:
                raise NetSuiteError(
                    400,
                    "INVALID_CONTENT",
                    f"Transaction {pid} has already been deposited (deposit {owner}).",
                    where,
                )
            amount = abs(Decimal(str(line.get("paymentAmount", 0))))
            total += -amount if record.type == "customerRefund" else amount
        for line in (fields.get("other") or {}).get("items", []):
            total += Decimal(str(line.get("amount", 0)))
        for line in (fields.get("cashback") or {}).get("items", []):
            total -= Decimal(str(line.get("amount", 0)))
        if total < 0:
            raise NetSuiteError(
                400, "INVALID_CONTENT", f"The deposit total may not be negative ({total})."
            )

    def applied(self) -> dict[int, dict[tuple[str, str], Decimal]]:
        if self._applied is None:
            self._applied = {}
            self._applies_to = {}
            for rtype in APPLY_TO_INVOICES:
                for record in self.store.list(rtype):
                    self._note_applied(record)
        return self._applied

    def _note_applied(self, record: Record) -> None:
        key = (record.type, record.external_id or f"#{record.id}")
        applied = self.applied()
        for invoice_id in self._applies_to.pop(key, ()):
            applied[invoice_id].pop(key, None)
        for invoice_id, amount in _applications(record.fields, self.store):
            lines = applied.setdefault(invoice_id, {})
            lines[key] = lines.get(key, Decimal(0)) + amount
            self._applies_to.setdefault(key, set()).add(invoice_id)

    def validate_applications(self, rtype: str, eid: str | None, fields: dict[str, Any]) -> None:
        """As NetSuite: what a payment or credit memo applies to an invoice may not exceed the
        invoice's amount remaining (its total less what the other records apply to it)."""
        key = (rtype, eid) if eid is not None else None
        mine: dict[int, Decimal] = {}
        for i, line in enumerate((fields.get("apply") or {}).get("items", [])):
            invoice = _applied_invoice(line, self.store)
            if invoice is None:
                continue
            mine[invoice.id] = mine.get(invoice.id, Decimal(0)) + _amount(line)
            others = sum(
                (a for k, a in self.applied().get(invoice.id, {}).items() if k != key),
                Decimal(0),
            )
            remaining = _invoice_total(invoice.fields) - others
            if mine[invoice.id] > remaining:
                raise NetSuiteError(
                    400,
                    "USER_ERROR",
                    f"The amount applied to invoice {invoice.id} ({mine[invoice.id]}) exceeds "
                    f"its amount remaining ({remaining}).",
                    f"apply.items[{i}].amount",
                )

    def _undeposited_funds(self, record: Record) -> bool:
        if record.fields.get("undepFunds") is True:
            return True
        account_id = (record.fields.get("account") or {}).get("id")
        account = self.store.get("account", int(account_id)) if account_id else None
        return account is not None and account.fields.get("acctType") == "UnDepFunds"

    # ----------------------------------------------------------------- operations
    def upsert(self, rtype: str, eid: str, body: dict[str, Any], replace: set[str]) -> Record:
        body = {k: v for k, v in body.items() if k not in ("id", "externalId", "links")}
        existing = self.store.get_by_eid(rtype, eid)
        self.validate(rtype, body, creating=existing is None)
        fields = body if existing is None else self.merge(rtype, existing.fields, body, replace)
        if rtype == "deposit":
            self.validate_deposit(eid, fields)
        if rtype in APPLY_TO_INVOICES:
            self.validate_applications(rtype, eid, fields)
        record = (
            self.store.create(rtype, eid, fields)
            if existing is None
            else self.store.update(existing, fields)
        )
        if rtype == "deposit":
            deposited = self.deposited()
            for pid in [p for p, owner in deposited.items() if owner == eid]:
                del deposited[pid]
            for pid in _payment_ids(fields):
                deposited[pid] = eid
        if rtype in APPLY_TO_INVOICES:
            self._note_applied(record)
        return record

    def create(self, rtype: str, body: dict[str, Any]) -> Record:
        """``POST …/{type}``: a new record (an externalId already taken is ``DUP_RCRD``)."""
        self.validate(rtype, body, creating=True)
        eid = body.get("externalId")
        if eid is not None and self.store.get_by_eid(rtype, str(eid)):
            raise NetSuiteError(400, "DUP_RCRD", "A record with this external ID already exists.")
        fields = {k: v for k, v in body.items() if k not in ("id", "externalId")}
        if rtype in APPLY_TO_INVOICES:
            self.validate_applications(rtype, None, fields)
        created = self.store.create(rtype, eid, fields)
        if rtype in APPLY_TO_INVOICES:
            self._note_applied(created)
        return created

    @staticmethod
    def merge(
        rtype: str, old: dict[str, Any], new: dict[str, Any], replace: set[str]
    ) -> dict[str, Any]:
        merged = dict(old)
        for key, value in new.items():
            if key in RULES[rtype].sublists and key not in replace and isinstance(value, dict):
                lines = list((old.get(key) or {}).get("items", [])) + list(value.get("items", []))
                merged[key] = {"items": lines}
            else:
                merged[key] = value
        return merged

    # ----------------------------------------------------------------- batch (asynchronous) jobs
    def submit_batch(self, request: web.Request, rtype: str, body_bytes: bytes) -> web.Response:
        """A batch request: up to 100 records of one type in ``{"items": [...]}``, answered
        **202 Accepted** with the job in ``Location`` and no body; the items are written later
        by the REST async processors.

        As Oracle documents it ("Batch Operations", https://docs.oracle.com/en/cloud/saas/
        netsuite/ns-online-help/article_0127092747.html): headers ``Prefer: respond-async`` and
        ``Content-Type: application/vnd.oracle.resource+json; type=collection``; "a maximum of
        100 records in one batch request"; POST creates, PUT upserts ("PUT requests only
        support external ID for the upsert operation", each item carrying its ``externalId``);
        an optional ``X-NetSuite-idempotency-key``. The 202 with ``Preference-Applied:
        respond-async`` and ``Location: …/async/v1/job/{id}`` is "Sending an Asynchronous
        Request" (https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/
        subsect_161278579295.html).

        Not modelled: PATCH batches (the emulator has no PATCH), batch GET/DELETE with
        ``?ids=``, and single (non-batch) requests sent with ``Prefer: respond-async`` (they
        are executed synchronously, as before)."""
        if request.method not in ("PUT", "POST"):
            raise NetSuiteError(
                405, "INVALID_REQUEST", f"The emulator does not model {request.method} batches."
            )
        # Oracle says both headers "must" be sent but not what NetSuite answers without them:
        # a 400 is our choice (the error code and wording are ours)
        if "respond-async" not in request.headers.get("Prefer", "").lower():
            raise NetSuiteError(
                400,
                "INVALID_HEADER",
                "A batch request (type=collection) needs the header Prefer: respond-async.",
            )
        key = request.headers.get("X-NetSuite-Idempotency-Key")
        if key is not None:
            # Oracle's example key is a UUID ("Sending an Asynchronous Request Using an
            # Idempotency Key", subsect_164494900632); what NetSuite answers for another form
            # is not documented: we refuse it, so a client bug shows here first
            try:
                uuid.UUID(key)
            except ValueError:
                raise NetSuiteError(
                    400, "INVALID_HEADER", "X-NetSuite-idempotency-key must be a UUID."
                ) from None
            if key in self.job_keys:
                self.async_counts["jobs_repeated"] += 1
                return self._idempotency_conflict(request, self.jobs[self.job_keys[key]])
        body = self._json(body_bytes)
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise NetSuiteError(
                400,
                "INVALID_CONTENT",
                'A batch request body is {"items": [...]} with at least one record.',
                "items",
            )
        if len(items) > BATCH_MAX_ITEMS:
            # Oracle gives the limit, not the error: code and wording are ours
            raise NetSuiteError(
                400,
                "INVALID_CONTENT",
                f"A batch request may hold at most {BATCH_MAX_ITEMS} records; this one holds "
                f"{len(items)}.",
                "items",
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise NetSuiteError(
                    400, "INVALID_CONTENT", "Each batch item must be a JSON object.", f"items[{i}]"
                )
        job = AsyncJob(
            id=self._next_job,
            rtype=rtype,
            method=request.method,
            replace={s for s in request.query.get("replace", "").split(",") if s},
            tasks=[AsyncTask(id=i + 1, body=item) for i, item in enumerate(items)],
            key=key,
        )
        self._next_job += 1
        self.jobs[job.id] = job
        if key is not None:
            self.job_keys[key] = job.id
        self.async_counts["jobs_submitted"] += 1
        self.async_counts["items_submitted"] += len(items)
        self.job_queue.append(job)
        self._pump()
        return web.Response(
            status=202,
            headers={
                "Location": self.job_url(request, job),
                "Preference-Applied": "respond-async",
            },
        )

    def _idempotency_conflict(self, request: web.Request, job: AsyncJob) -> web.Response:
        """A repeated idempotency key: the job is not submitted again, and the answer points at
        the first one, exactly as Oracle shows it ("Sending an Asynchronous Request Using an
        Idempotency Key", https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/
        subsect_164494900632.html): ``HTTP 400 Conflict`` with ``Location`` of the earlier job
        and ``o:errorCode`` ``IDEMPOTENCY_ERROR``. Oracle does not say whether the body is
        compared: here the key alone decides (the key "enables you to refer to a request"), so a
        reused key with another body gets the same answer. Keys do not expire (Oracle gives no
        lifetime) until the emulator is reset."""
        body = {
            "type": f"{RFC2616}#sec10.4.10",
            "title": "Conflict",
            "status": 400,
            "o:errorDetails": [
                {
                    "detail": "A request with the same idempotency key is already submitted. "
                    'See the "Location" header for a link to the previously submitted job',
                    "o:errorCode": "IDEMPOTENCY_ERROR",
                }
            ],
        }
        return web.Response(
            status=400,
            reason="Conflict",
            text=dumps(body),
            content_type="application/vnd.oracle.resource+json",
            headers={
                "Location": self.job_url(request, job),
                "Preference-Applied": "respond-async",
                "Content-Language": "en",
            },
        )

    def _pump(self) -> None:
        """Hand queued jobs, first in first out, to free REST async processors.

        A processor takes a whole job and writes its items one after the other, in the order of
        ``items``; jobs run in parallel across processors. Oracle says batch operations are
        "executed asynchronously and in parallel" without saying what runs in parallel with
        what; integration vendors report that a batch's records are processed one by one in
        the background (Workato's NetSuite REST connector, "process each record sequentially
        in the background"). Items in order keeps a batch deterministic (two items with one
        externalId: the later one wins) and is the conservative figure for a benchmark (one
        job is never faster than one processor)."""
        while self.job_queue and len(self.running) < self.behaviour.async_processors:
            job = self.job_queue.popleft()
            self.running[job.id] = asyncio.get_running_loop().create_task(self._run_job(job))
            self.max_jobs_running = max(self.max_jobs_running, len(self.running))

    async def _run_job(self, job: AsyncJob) -> None:
        """One processor running one job. It holds no concurrency slot: Oracle counts requests
        toward the account's limit ("Concurrency Governance and Session Management",
        https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/subsect_1559222360.html
        : "each request counts toward the account limit"), and the submit and the polls are
        requests; the background execution runs in the REST Async Processors, which Oracle
        sizes separately (chapter_161251386312). Injected faults apply to requests only."""
        try:
            job.progress, job.start = "processing", _now_iso()
            for task in job.tasks:
                task.progress, task.start = "processing", _now_iso()
                delay = self.behaviour.item_s(self.rng)
                if delay:
                    await asyncio.sleep(delay)
                self._execute(job, task)
                task.end = _now_iso()
            # Oracle documents "pending" and "succeeded" for REST jobs and tasks; for a job
            # with a failed item it documents nothing: "failed" here (SOAP's async jobs say
            # "finishedWithErrors"), the items' own results telling which ones failed
            failed = any(t.progress == "failed" for t in job.tasks)
            job.progress, job.end = "failed" if failed else "succeeded", _now_iso()
            self.async_counts["jobs_completed"] += 1
        finally:
            if self.running.get(job.id) is asyncio.current_task():
                del self.running[job.id]
                self._pump()

    def _execute(self, job: AsyncJob, task: AsyncTask) -> None:
        """Write one item exactly as the single request would (same validation, same errors)."""
        try:
            if job.method == "PUT":
                eid = task.body.get("externalId")
                if eid is None or eid == "":
                    raise NetSuiteError(
                        400,
                        "INVALID_ID",
                        "A batch PUT upserts by external ID: each item needs an externalId.",
                        "externalId",
                    )
                if not EID.match(str(eid)):
                    raise NetSuiteError(
                        400,
                        "INVALID_ID",
                        "An external ID may contain only letters, digits, _ and -.",
                    )
                # an internal id in a PUT item is not used: "PUT requests only support
                # external ID for the upsert operation" (article_0127092747)
                task.record = self.upsert(job.rtype, str(eid), task.body, job.replace)
            else:
                task.record = self.create(job.rtype, task.body)
        except NetSuiteError as exc:
            task.error, task.progress = exc, "failed"
            self.async_counts["items_failed"] += 1
        except Exception as exc:  # what a synchronous request would answer with a 500
            log.exception("batch job %s task %s", job.id, task.id)
            task.error = NetSuiteError(
                500, "UNEXPECTED_ERROR", f"An unexpected error occurred. {exc}"
            )
            task.progress = "failed"
            self.async_counts["items_failed"] += 1
        else:
            task.progress = "succeeded"
            self.async_counts["items_succeeded"] += 1
            self.last_write = time.time()
            self.first_write = self.first_write or self.last_write
        self.async_counts["items_executed"] += 1

    def job_url(self, request: web.Request, job: AsyncJob) -> str:
        return f"{request.scheme}://{request.host}{ASYNC_ROOT}/job/{job.id}"

    def async_read(self, request: web.Request) -> web.Response:
        """``GET …/async/v1/job/{id}`` (job status), ``…/job/{id}/task`` (its tasks),
        ``…/task/{taskId}`` (a task's status) and ``…/task/{taskId}/result``, in the shapes of
        Oracle's examples ("Sending an Asynchronous Request", subsect_161278579295; "Polling
        for the Status of a Completed Asynchronous Request", subsect_161252896355; "Getting the
        Result of an Executed Request", subsect_161252889998)."""
        match = ASYNC_PATH.match(request.path)
        job = None
        if match is not None and match.group(1).isdigit():
            job = self.jobs.get(int(match.group(1)))
        if match is None or job is None:
            raise NetSuiteError(
                404, "NONEXISTENT_ID", f"The asynchronous job does not exist. ({request.path})"
            )
        if request.method != "GET":
            raise NetSuiteError(405, "INVALID_REQUEST", f"{request.method} is not allowed here")
        url = self.job_url(request, job)
        if match.group(2) is None:
            body: dict[str, Any] = {
                "links": [{"rel": "self", "href": url}],
                "completed": job.completed,
                "id": str(job.id),
                "progress": job.progress,
                "task": {"links": [{"rel": "self", "href": f"{url}/task"}]},
            }
            # Oracle's job example shows no times (a pending job); its task example has
            # startTime/endTime, which we give the job too once it has them
            body.update(_times(job.start, job.end))
            return _json_response(body)
        if match.group(3) is None:
            return self._task_list(request, job, url)
        ident = match.group(3)
        task = (
            job.tasks[int(ident) - 1]
            if ident.isdigit() and 0 < int(ident) <= len(job.tasks)
            else None
        )
        if task is None:
            raise NetSuiteError(
                404, "NONEXISTENT_ID", f"The task does not exist. (job {job.id} task {ident})"
            )
        task_url = f"{url}/task/{task.id}"
        if match.group(4) is None:
            body = {
                "links": [
                    {"rel": "related", "href": f"{task_url}/result"},
                    {"rel": "self", "href": task_url},
                ],
                "completed": task.completed,
                "id": str(task.id),
                "progress": task.progress,
            }
            body.update(_times(task.start, task.end))
            return _json_response(body)
        return self._task_result(request, job, task)

    def _task_list(self, request: web.Request, job: AsyncJob, url: str) -> web.Response:
        """The job's tasks as a collection (Oracle shows the request, not this answer: we use
        the shape of its other collections, with ``limit``/``offset`` paging)."""
        limit = min(int(request.query.get("limit", "1000")), 1000)
        offset = int(request.query.get("offset", "0"))
        page = job.tasks[offset : offset + limit]
        body = {
            "links": [{"rel": "self", "href": f"{url}/task"}],
            "count": len(page),
            "hasMore": offset + limit < len(job.tasks),
            "items": [
                {"links": [{"rel": "self", "href": f"{url}/task/{t.id}"}], "id": str(t.id)}
                for t in page
            ],
            "offset": offset,
            "totalResults": len(job.tasks),
        }
        return _json_response(body)

    def _task_result(self, request: web.Request, job: AsyncJob, task: AsyncTask) -> web.Response:
        """What the item's write answered. Oracle's only example is the result of a GET (the
        record, with its ``self`` link); for writes it shows none. A written item answers 200
        with the record's ``self`` link, ``id`` and ``externalId``; a failed one answers what
        the single request would have answered (e.g. 400 with ``o:errorDetails``). A task not
        finished yet has no result: 404 (our choice)."""
        if task.error is not None:
            return task.error.response()
        if task.record is None:
            raise NetSuiteError(
                404,
                "NONEXISTENT_ID",
                f"The task has no result yet (job {job.id} task {task.id}: {task.progress}).",
            )
        body: dict[str, Any] = {
            "links": [{"rel": "self", "href": self.location(request, task.record)}],
            "id": str(task.record.id),
        }
        if task.record.external_id is not None:
            body["externalId"] = task.record.external_id
        return _json_response(body)

    def async_stats(self) -> dict[str, Any]:
        counts = self.async_counts
        return {
            "processors": self.behaviour.async_processors,
            "jobs_submitted": counts["jobs_submitted"],
            "jobs_repeated": counts["jobs_repeated"],
            "jobs_completed": counts["jobs_completed"],
            "jobs_queued": len(self.job_queue),
            "jobs_running": len(self.running),
            "max_jobs_running": self.max_jobs_running,
            "items_submitted": counts["items_submitted"],
            "items_executed": counts["items_executed"],
            "items_succeeded": counts["items_succeeded"],
            "items_failed": counts["items_failed"],
        }

    def reset_jobs(self) -> None:
        for running in self.running.values():
            running.cancel()
        self.running.clear()
        self.job_queue.clear()
        self.jobs.clear()
        self.job_keys.clear()
        self.async_counts.clear()
        self.max_jobs_running = 0

    # ----------------------------------------------------------------- HTTP
    def location(self, request: web.Request, record: Record) -> str:
        return f"{request.scheme}://{request.host}{ROOT}/{record.type}/{record.id}"

    async def handle(self, request: web.Request) -> web.Response:
        body_bytes = await request.read()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._handle(request, body_bytes)
        except DroppedResponse:
            self.requests[f"{request.method} dropped"] += 1
            if request.transport is not None:
                request.transport.close()
            raise
        finally:
            self.in_flight -= 1
        is_query = request.path == SUITEQL_PATH
        is_async = request.path.startswith(ASYNC_ROOT)  # job, task and result reads
        label = "QUERY" if is_query else "ASYNC" if is_async else request.method
        self.requests[f"{label} {response.status}"] += 1
        # a batch's 202 writes nothing yet: its items stamp the write times when they run
        written = response.status < 300 and response.status != 202
        if request.method in ("PUT", "POST") and written and not is_query:
            self.last_write = time.time()
            self.first_write = self.first_write or self.last_write
        return response

    async def _handle(self, request: web.Request, body_bytes: bytes) -> web.Response:
        behaviour = self.behaviour
        try:
            if behaviour.concurrency_limit and self.in_flight > behaviour.concurrency_limit:
                self.faults["concurrency"] += 1
                code, text = ERROR_TEXT["429"]
                raise NetSuiteError(429, code, text)
            delay = behaviour.latency_s(self.rng)
            if delay:
                await asyncio.sleep(delay)
            if time.monotonic() < self.burst_until:
                self.faults["401 burst"] += 1
                raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN)
            self.authenticate(request, body_bytes)
            fault = behaviour.draw(self.rng)
            if fault is not None:
                self.faults[fault] += 1
            if fault == "401":
                raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN)
            if fault is not None and fault != "drop":
                code, text = ERROR_TEXT.get(fault, ("UNEXPECTED_ERROR", "Injected error."))
                raise NetSuiteError(int(fault), code, text)
            if request.path == SUITEQL_PATH:
                return self.suiteql(request, body_bytes)
            if request.path == GOVERNANCE_PATH:
                return self.governance(request)
            if request.path.startswith(ASYNC_ROOT):
                return self.async_read(request)
            response = self.dispatch(request, body_bytes)
            if fault == "drop" and request.method in ("PUT", "POST"):
                raise DroppedResponse()
            return response
        except NetSuiteError as exc:
            return exc.response()

    def authenticate(self, request: web.Request, body_bytes: bytes) -> None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            expiry = self.tokens.get(header[len("Bearer ") :])
            if expiry is None or expiry < time.monotonic():
                raise NetSuiteError(401, "INVALID_LOGIN", INVALID_LOGIN)
            return
        verify_oauth1(request, body_bytes, self.creds)

    # ----------------------------------------------------------------- OAuth 2.0
    async def token(self, request: web.Request) -> web.Response:
        """Client credentials with a JWT assertion → a bearer token (RFC 6749, 7523)."""
        form = await request.post()

        def error(status: int, code: str, description: str) -> web.Response:
            self.requests[f"token {status}"] += 1
            return web.json_response(
                {"error": code, "error_description": description}, status=status
            )

        if form.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return error(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        if self.public_key is None:
            return error(401, "invalid_client", "no OAuth 2.0 client is configured")
        try:
            token = jwt.decode(
                str(form.get("client_assertion", "")),
                self.public_key,
                algorithms=["PS256", "RS256", "ES256"],
            )
        except (JoseError, ValueError) as exc:
            return error(401, "invalid_client", f"client assertion not verified: {exc}")
        claims, now = token.claims, time.time()
        scopes = claims.get("scope")
        scopes = scopes.split(",") if isinstance(scopes, str) else list(scopes or [])
        if token.header.get("kid") != self.creds.certificate_id:
            return error(401, "invalid_client", "kid is not a certificate of this client")
        if claims.get("iss") != self.creds.client_id:
            return error(401, "invalid_client", "iss is not a client id of this account")
        problems = []
        if claims.get("aud") != f"{request.scheme}://{request.host}{TOKEN_PATH}":
            problems.append("aud is not this token endpoint")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int) or exp < now or iat > now + 60:
            problems.append("exp/iat missing or out of range")
        elif exp - iat > 3600:
            problems.append("the assertion may be valid for at most 3600 s")
        if "rest_webservices" not in scopes:
            problems.append("scope must include rest_webservices")
        if problems:
            return error(400, "invalid_grant", "; ".join(problems))
        access = secrets.token_urlsafe(32)
        ttl = self.behaviour.token_ttl_s
        self.tokens = {t: e for t, e in self.tokens.items() if e > time.monotonic()}
        self.tokens[access] = time.monotonic() + ttl
        self.tokens_issued += 1
        self.requests["token 200"] += 1
        return web.json_response(
            {"access_token": access, "expires_in": str(ttl), "token_type": "bearer"}
        )

    def dispatch(self, request: web.Request, body_bytes: bytes) -> web.Response:
        rtype = request.match_info["type"]
        ident = request.match_info.get("ident")
        if rtype not in RULES:
            raise NetSuiteError(
                404, "NONEXISTENT_RCRD_TYPE", f"Record type '{rtype}' does not exist."
            )
        if ident is None:
            if is_batch(request):
                return self.submit_batch(request, rtype, body_bytes)
            if request.method == "POST":
                created = self.create(rtype, self._json(body_bytes))
                return web.Response(
                    status=204, headers={"Location": self.location(request, created)}
                )
            if request.method == "GET":
                return self.list_ids(request, rtype)
            raise NetSuiteError(405, "INVALID_REQUEST", f"{request.method} is not allowed here")

        eid = ident[4:] if ident.startswith("eid:") else None
        if eid is not None and not EID.match(eid):
            raise NetSuiteError(
                400, "INVALID_ID", "An external ID may contain only letters, digits, _ and -."
            )
        if request.method == "PUT":
            if eid is None:
                raise NetSuiteError(405, "INVALID_REQUEST", "PUT is only allowed with eid:")
            replace = {s for s in request.query.get("replace", "").split(",") if s}
            written = self.upsert(rtype, eid, self._json(body_bytes), replace)
            return web.Response(status=204, headers={"Location": self.location(request, written)})
        if request.method == "GET":
            record: Record | None = (
                self.store.get_by_eid(rtype, eid)
                if eid is not None
                else self.store.get(rtype, int(ident))
                if ident.isdigit()
                else None
            )
            if record is None:
                raise NetSuiteError(
                    404,
                    "NONEXISTENT_ID",
                    f"The record instance does not exist. Provide a valid record "
                    f"instance ID. ({rtype} {ident})",
                )
            out = record.as_json()
            out["links"] = [{"rel": "self", "href": self.location(request, record)}]
            return web.Response(
                text=dumps(out), content_type="application/vnd.oracle.resource+json"
            )
        if request.method == "DELETE":
            return self.delete(rtype, ident, eid)
        raise NetSuiteError(405, "INVALID_REQUEST", f"{request.method} is not supported yet")

    def delete(self, rtype: str, ident: str, eid: str | None) -> web.Response:
        """``DELETE …/{type}/{id|eid:…}``: 204 with no body (Oracle, "Deleting a Record
        Instance", section_1545142287). What the record applied to invoices or deposited is
        released with it. Not modelled: NetSuite's refusal to delete a record others depend on."""
        record = (
            self.store.get_by_eid(rtype, eid)
            if eid is not None
            else self.store.get(rtype, int(ident))
            if ident.isdigit()
            else None
        )
        if record is None or record.id < 1000:  # the set-up records are not ours to delete
            raise NetSuiteError(
                404,
                "NONEXISTENT_ID",
                f"The record instance does not exist. Provide a valid record instance ID. "
                f"({rtype} {ident})",
            )
        self.store.delete(record)
        self._deposited = None  # recomputed from what is left
        self._applied = None
        return web.Response(status=204)

    def governance(self, request: web.Request) -> web.Response:
        """``GET /system/v1/governanceLimits``, in the shapes of Oracle's GovernanceLimits
        Operation (article_0625010817): the account's limit, its unallocated part, and the
        limit type (an integration-specific limit is only reported when one is allocated)."""
        if request.method != "GET":
            raise NetSuiteError(405, "INVALID_REQUEST", f"{request.method} is not allowed here")
        behaviour = self.behaviour
        account = behaviour.concurrency_limit or behaviour.account_concurrency_limit
        allocated = behaviour.integration_concurrency_limit
        body: dict[str, Any] = {
            "accountConcurrencyLimit": account,
            "accountUnallocatedConcurrencyLimit": max(account - allocated, 0),
        }
        if allocated:
            body["integrationConcurrencyLimit"] = allocated
            body["integrationLimitType"] = "integrationSpecific"
        else:
            body["integrationLimitType"] = "accountLimit"
        return web.Response(text=dumps(body), content_type="application/json")

    def suiteql(self, request: web.Request, body_bytes: bytes) -> web.Response:
        """``POST /query/v1/suiteql``: only ``SELECT id FROM t WHERE LOWER(TRIM(f)) = 'v'``."""
        if request.method != "POST":
            raise NetSuiteError(405, "INVALID_REQUEST", "SuiteQL queries are POSTed")
        if "transient" not in request.headers.get("Prefer", ""):
            raise NetSuiteError(
                400, "INVALID_PARAMETER", "SuiteQL requests need the header Prefer: transient"
            )
        query = str(self._json(body_bytes).get("q", ""))
        by_eid = EXTERNAL_IDS_QUERY.match(query)
        if by_eid is not None:
            return self.suiteql_external_ids(request, by_eid)
        match = MATCH_QUERY.match(query)
        if match is None:
            raise NetSuiteError(
                400, "INVALID_PARAMETER", f"The emulator does not run this query: {query[:200]}"
            )
        rtype, column, value = match.group(1), match.group(2), match.group(3).replace("''", "'")
        if rtype not in RULES:
            raise NetSuiteError(400, "INVALID_PARAMETER", f"Unknown table {rtype}")
        # field names are not case-sensitive in SuiteQL (Oracle, "SuiteQL Limitations and
        # Exceptions": SELECT * FROM account, Account and ACCOUNT are one table; the same holds
        # for field names), so entityid matches the record's entityId
        wanted = column.lower()
        found = [
            r
            for r in self.store.list(rtype, include_seed=True)
            if str(next((v for k, v in r.fields.items() if k.lower() == wanted), ""))
            .strip()
            .lower()
            == value
        ]
        limit = min(int(request.query.get("limit", "1000")), 1000)
        items = [{"links": [], "id": str(r.id)} for r in sorted(found, key=lambda r: r.id)]
        body = {
            "links": [],
            "count": min(len(items), limit),
            "hasMore": len(items) > limit,
            "items": items[:limit],
            "offset": 0,
            "totalResults": len(items),
        }
        return web.Response(text=dumps(body), content_type="application/vnd.oracle.resource+json")

    def suiteql_external_ids(self, request: web.Request, match: re.Match[str]) -> web.Response:
        """``SELECT id, externalid FROM transaction WHERE type = 'CustInvc' AND externalid IN
        (...)`` (or ``FROM customer``): the records of those external ids that exist, paged
        like every SuiteQL answer (``limit`` up to 1000, ``offset``)."""
        table, type_id = match.group(1).lower(), match.group(2)
        if table == "customer":
            if type_id is not None:
                raise NetSuiteError(400, "INVALID_PARAMETER", "customer has no type column here")
            rtype = "customer"
        else:
            if type_id not in SUITEQL_TRANSACTION_TYPES:
                raise NetSuiteError(400, "INVALID_PARAMETER", f"Unknown transaction type {type_id}")
            rtype = SUITEQL_TRANSACTION_TYPES[type_id]
        wanted = [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", match.group(3))]
        found = sorted(
            (r for eid in dict.fromkeys(wanted) if (r := self.store.get_by_eid(rtype, eid))),
            key=lambda r: r.id,
        )
        limit = min(int(request.query.get("limit", "1000")), 1000)
        offset = int(request.query.get("offset", "0"))
        page = found[offset : offset + limit]
        body = {
            "links": [],
            "count": len(page),
            "hasMore": offset + limit < len(found),
            "items": [{"links": [], "id": str(r.id), "externalid": r.external_id} for r in page],
            "offset": offset,
            "totalResults": len(found),
        }
        return web.Response(text=dumps(body), content_type="application/vnd.oracle.resource+json")

    def list_ids(self, request: web.Request, rtype: str) -> web.Response:
        limit = min(int(request.query.get("limit", "1000")), 1000)
        offset = int(request.query.get("offset", "0"))
        records = self.store.list(rtype, include_seed=True)
        page = records[offset : offset + limit]
        body = {
            "links": [],
            "count": len(page),
            "hasMore": offset + limit < len(records),
            "items": [
                {"id": str(r.id), "links": [{"rel": "self", "href": self.location(request, r)}]}
                for r in page
            ],
            "offset": offset,
            "totalResults": len(records),
        }
        return web.Response(text=dumps(body), content_type="application/vnd.oracle.resource+json")

    @staticmethod
    def _json(body_bytes: bytes) -> dict[str, Any]:
        try:
            body = loads(body_bytes.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NetSuiteError(400, "INVALID_CONTENT", f"Invalid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise NetSuiteError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        return body

    # ----------------------------------------------------------------- admin (not NetSuite)
    async def admin_records(self, request: web.Request) -> web.Response:
        rtype = request.query.get("type")
        seeded = request.query.get("include_seed") == "true"
        records = [
            {"type": r.type, "version": r.version, **r.as_json()}
            for r in self.store.list(rtype, include_seed=seeded)
        ]
        return web.Response(
            text=dumps({"records": records, "requests": dict(self.requests)}),
            content_type="application/json",
        )

    async def admin_reset(self, request: web.Request) -> web.Response:
        self.store.reset()
        self.reset_jobs()
        self.requests.clear()
        self.faults.clear()
        self.max_in_flight = 0
        self.first_write = self.last_write = None
        self._deposited = None
        self._applied = None
        return web.json_response({"reset": True})

    async def admin_behaviour(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            changes = await request.json()
            self.set_behaviour(Behaviour(**{**asdict(self.behaviour), **changes}))
        return web.json_response(asdict(self.behaviour))

    async def admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": dict(self.requests),
                "faults": dict(self.faults),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "tokens_issued": self.tokens_issued,
                "first_write": self.first_write,
                "last_write": self.last_write,
                "async": self.async_stats(),
            }
        )


def _times(start: str | None, end: str | None) -> dict[str, str]:
    times = {"startTime": start, "endTime": end}
    return {k: v for k, v in times.items() if v is not None}


def _json_response(body: dict[str, Any]) -> web.Response:
    return web.Response(text=dumps(body), content_type="application/vnd.oracle.resource+json")


def _amount(line: dict[str, Any]) -> Decimal:
    return Decimal(str(line.get("amount") or 0))


def _invoice_total(fields: dict[str, Any]) -> Decimal:
    total = Decimal(0)
    for line in (fields.get("item") or {}).get("items", []):
        if "amount" in line:
            total += _amount(line)
        else:
            total += Decimal(str(line.get("quantity") or 1)) * Decimal(str(line.get("rate") or 0))
    return total


def _applied_invoice(line: dict[str, Any], store: Store) -> Record | None:
    """The invoice an ``apply`` line applies to, if it is applied and names an invoice."""
    if line.get("apply") is False:
        return None
    rid = str((line.get("doc") or {}).get("id", ""))
    return store.get("invoice", int(rid)) if rid.isdigit() else None


def _applications(fields: dict[str, Any], store: Store) -> list[tuple[int, Decimal]]:
    out = []
    for line in (fields.get("apply") or {}).get("items", []):
        invoice = _applied_invoice(line, store)
        if invoice is not None:
            out.append((invoice.id, _amount(line)))
    return out


def _payment_ids(fields: dict[str, Any]) -> list[int]:
    return [int(line["id"]) for line in (fields.get("payment") or {}).get("items", [])]


def _public_key(pem: str) -> RSAKey | ECKey:
    return ECKey.import_key(pem) if "EC " in pem or _is_ec(pem) else RSAKey.import_key(pem)


def _is_ec(pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return isinstance(load_pem_public_key(pem.encode()), ec.EllipticCurvePublicKey)


def make_app(
    store: Store, creds: Credentials, behaviour: Behaviour | None = None
) -> web.Application:
    emu = Emulator(store, creds, behaviour)
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post(TOKEN_PATH, emu.token)
    app.router.add_route("*", SUITEQL_PATH, emu.handle)
    app.router.add_route("*", GOVERNANCE_PATH, emu.handle)
    app.router.add_route("*", ASYNC_ROOT + "/{tail:.*}", emu.handle)
    app.router.add_route("*", ROOT + "/{type}", emu.handle)
    app.router.add_route("*", ROOT + "/{type}/{ident}", emu.handle)
    app.router.add_get("/_emulator/records", emu.admin_records)
    app.router.add_post("/_emulator/reset", emu.admin_reset)
    app.router.add_route("*", "/_emulator/behaviour", emu.admin_behaviour)
    app.router.add_get("/_emulator/stats", emu.admin_stats)
    app.on_cleanup.append(lambda _app: _close(store))
    return app


async def _close(store: Store) -> None:
    store.close()


def credentials_from_settings() -> Credentials:
    """The account accepts what the LEDGER_NETSUITE_* settings hold (the sink's own), both
    methods when both are set; the certificate's public key is derived from the private key."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    from ledgerstream import settings

    ns = settings.netsuite()
    if not ns.netsuite_account_id:
        raise SystemExit("the emulator needs LEDGER_NETSUITE_ACCOUNT_ID")

    def value(secret: Any) -> str | None:
        return secret.get_secret_value() if secret is not None else None

    public = None
    if ns.netsuite_private_key is not None:
        key = load_pem_private_key(ns.netsuite_private_key.get_secret_value().encode(), None)
        public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    creds = Credentials(
        account=ns.netsuite_account_id,
        consumer_key=value(ns.netsuite_consumer_key),
        consumer_secret=value(ns.netsuite_consumer_secret),
        token_id=value(ns.netsuite_token_id),
        token_secret=value(ns.netsuite_token_secret),
        client_id=value(ns.netsuite_client_id),
        certificate_id=ns.netsuite_certificate_id,
        public_key_pem=public.decode() if public else None,
    )
    if not (creds.consumer_secret and creds.token_secret) and not creds.public_key_pem:
        raise SystemExit("the emulator needs TBA or OAuth 2.0 credentials (LEDGER_NETSUITE_*)")
    return creds


def serve(host: str, port: int, data: str | Path, behaviour: Behaviour | None = None) -> None:
    """Serve with the credentials of the LEDGER_NETSUITE_* settings (the sink's own)."""
    behaviour = behaviour or Behaviour()
    app = make_app(Store(data), credentials_from_settings(), behaviour)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
