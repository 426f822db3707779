"""SuiteTalk REST client: ``PUT eid:`` upserts with either of NetSuite's two auth methods.

- Token-based auth (OAuth 1.0a): requests-oauthlib signs each request (HMAC-SHA256,
  ``realm`` = account id, RFC 5849 encoding).
- OAuth 2.0 machine-to-machine: a client-credentials grant whose client assertion is a JWT
  signed (joserfc) with the private key of the certificate registered on the integration. The
  access token is cached and fetched again shortly before it expires, or at once after a 401.

The client is shared by the sink's worker threads: the session's connection pool is sized to
the configured concurrency, and the token cache is guarded by a lock.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import simplejson
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1

from ledgerstream import settings

log = logging.getLogger(__name__)

RECORD_ROOT = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
# SuiteQL keeps transactions in one table, told apart by a type id
SUITEQL_TRANSACTION_TYPES = {
    "invoice": "CustInvc",
    "customerPayment": "CustPymt",
    "creditMemo": "CustCred",
    "customerRefund": "CustRfnd",
    "deposit": "Deposit",
}
# the integration's concurrency limits (Oracle's NetSuite help: "GovernanceLimits Operation")
GOVERNANCE_PATH = "/services/rest/system/v1/governanceLimits"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# batch operations (Oracle's NetSuite help, "Batch Operations", article_0127092747): up to 100
# records of one type per request, with this content type and Prefer: respond-async; the job is
# read under ASYNC_ROOT ("REST Web Services Request Processing", chapter_161251386312)
ASYNC_ROOT = "/services/rest/async/v1"
COLLECTION_CONTENT_TYPE = "application/vnd.oracle.resource+json; type=collection"
BATCH_MAX_ITEMS = 100


@dataclass
class NetSuiteResponseError(Exception):
    """NetSuite answered with an error status; ``details`` is its ``o:errorDetails``."""

    status: int
    title: str
    details: list[dict[str, Any]]

    def __str__(self) -> str:
        first = self.details[0] if self.details else {}
        return (
            f"HTTP {self.status} {self.title}: {first.get('o:errorCode', '')} "
            f"{first.get('detail', '')} {first.get('o:errorPath', '')}".strip()
        )

    @property
    def permanent(self) -> bool:
        """400-class validation errors will fail the same way again."""
        return self.status in (400, 404, 405) and not self._changed_concurrently()

    def _changed_concurrently(self) -> bool:
        return any("has been changed" in str(d.get("detail", "")) for d in self.details)


class NetSuiteBatchError(Exception):
    """A batch job's results cannot be matched to the items that were submitted."""


@dataclass(frozen=True)
class JobStatus:
    """An asynchronous job as ``GET …/async/v1/job/{id}`` reports it.

    ``progress`` is NetSuite's word ("pending", "processing", "succeeded", "failed");
    ``done`` = ``completed``. A job whose ``failed`` is true may still have written some of its
    items: read ``job_results`` for each item's outcome."""

    url: str
    id: str
    progress: str
    completed: bool
    start_time: str | None = None
    end_time: str | None = None

    @property
    def done(self) -> bool:
        return self.completed

    @property
    def failed(self) -> bool:
        return self.progress.lower() in ("failed", "finishedwitherrors")

    @property
    def succeeded(self) -> bool:
        """Done, and every item written: Oracle's pages show "succeeded" for such a job; any
        other word (documented or not) is not taken as all-clear."""
        return self.completed and self.progress.lower() == "succeeded"


class NetSuiteAuthError(Exception):
    """The credentials are refused (not a transient condition): stop, do not retry."""


class M2MAuth(requests.auth.AuthBase):
    """OAuth 2.0 client credentials with a signed JWT assertion; bearer token cached.

    The token cache is kept here rather than taken from an OAuth client library: NetSuite's
    client-credentials flow wants an assertion of its own shape (``scope`` inside the JWT,
    ``kid`` naming the uploaded certificate, no ``client_id`` form field), while the generic
    private-key-JWT clients build RFC 7523's (``iss`` = ``sub`` = client id); fitting them
    would mean overriding their claims and headers, for a cache that is a token, an expiry
    and a lock. The JWT itself is signed by joserfc.
    """

    ASSERTION_LIFETIME_S = 300
    REFRESH_MARGIN_S = 60

    def __init__(self, cfg: settings.NetSuiteSettings, timeout: float):
        assert cfg.netsuite_client_id and cfg.netsuite_private_key and cfg.netsuite_certificate_id
        self.client_id = cfg.netsuite_client_id.get_secret_value()
        self.kid = cfg.netsuite_certificate_id
        self.alg = cfg.netsuite_jwt_algorithm
        pem = cfg.netsuite_private_key.get_secret_value()
        self.key = ECKey.import_key(pem) if self.alg.startswith("ES") else RSAKey.import_key(pem)
        self.scopes = [s.strip() for s in cfg.netsuite_scopes.split(",") if s.strip()]
        self.token_url = cfg.token_url()
        self.timeout = timeout
        self.lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "scope": self.scopes,
            "aud": self.token_url,
            "iat": now,
            "exp": now + self.ASSERTION_LIFETIME_S,
            "jti": secrets.token_hex(16),
        }
        header = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])

    def token(self) -> str:
        with self.lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = self._fetch()
                margin = min(self.REFRESH_MARGIN_S, lifetime / 4)
                self._expires_at = time.monotonic() + lifetime - margin
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (NetSuite refused it) so the next request fetches a new one."""
        with self.lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        resp = requests.post(
            self.token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),
            },
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )
        self.fetches += 1
        if resp.status_code in (400, 401, 403):
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise NetSuiteAuthError(
                f"NetSuite's token endpoint refused the client assertion: HTTP "
                f"{resp.status_code} {body.get('error', resp.reason)} "
                f"{body.get('error_description', '')}".strip()
                + ". Check LEDGER_NETSUITE_CLIENT_ID, LEDGER_NETSUITE_CERTIFICATE_ID and the "
                "private key (it must belong to the certificate uploaded for that id)."
            )
        if resp.status_code >= 300:
            raise NetSuiteResponseError(resp.status_code, str(resp.reason), [])
        body = resp.json()
        log.info("fetched a NetSuite OAuth 2.0 access token (valid %ss)", body.get("expires_in"))
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


class NetSuiteClient:
    def __init__(self, cfg: settings.NetSuiteSettings | None = None):
        cfg = cfg or settings.netsuite()
        cfg.require_credentials()
        self.root = cfg.rest_root()
        self.timeout = cfg.netsuite_timeout_s
        self.session = requests.Session()
        pool = max(10, cfg.netsuite_concurrency * 2)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.m2m: M2MAuth | None = None
        # job URL -> the external ids of its items, in order (for job_results); bounded
        self._batches: OrderedDict[str, list[str]] = OrderedDict()
        self._batches_lock = threading.Lock()
        if cfg.netsuite_auth == "m2m":
            self.m2m = M2MAuth(cfg, self.timeout)
            self.session.auth = self.m2m
        else:
            assert cfg.netsuite_consumer_key and cfg.netsuite_consumer_secret
            assert cfg.netsuite_token_id and cfg.netsuite_token_secret
            self.session.auth = OAuth1(
                client_key=cfg.netsuite_consumer_key.get_secret_value(),
                client_secret=cfg.netsuite_consumer_secret.get_secret_value(),
                resource_owner_key=cfg.netsuite_token_id.get_secret_value(),
                resource_owner_secret=cfg.netsuite_token_secret.get_secret_value(),
                signature_method=SIGNATURE_HMAC_SHA256,
                realm=cfg.netsuite_account_id,
            )
        self.session.headers.update(
            {"Content-Type": "application/json", "Accept": "application/json"}
        )

    def url(self, record_type: str, ident: str = "") -> str:
        return f"{self.root}{RECORD_ROOT}/{record_type}" + (f"/{ident}" if ident else "")

    def upsert(
        self, record_type: str, external_id: str, body_json: str, replace: list[str] | None = None
    ) -> str:
        """``PUT …/eid:<externalId>``; returns the internal id from the Location header."""
        params = {"replace": ",".join(replace)} if replace else None
        resp = self.session.put(
            self.url(record_type, f"eid:{external_id}"),
            params=params,
            data=body_json.encode("utf-8"),
            timeout=self.timeout,
        )
        self._check(resp)
        location = resp.headers.get("Location", "")
        internal_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not internal_id.isdigit():
            raise NetSuiteResponseError(
                resp.status_code,
                "No internal id in Location",
                [{"detail": f"Location header was {location!r}"}],
            )
        return internal_id

    def find_id(self, record_type: str, field: str, value: str) -> str | None:
        """SuiteQL: the lowest internal id whose ``field`` equals ``value`` (case and surrounding
        blanks ignored), or None."""
        literal = value.strip().lower().replace("'", "''")
        query = f"SELECT id FROM {record_type} WHERE LOWER(TRIM({field})) = '{literal}' ORDER BY id"
        items = self._suiteql(query, limit=1).get("items", [])
        return str(items[0]["id"]) if items else None

    def _suiteql(self, query: str, limit: int, offset: int = 0) -> dict[str, Any]:
        """One page of a SuiteQL query's rows (``POST …/query/v1/suiteql``)."""
        resp = self.session.post(
            f"{self.root}{SUITEQL_PATH}",
            params={"limit": limit, **({"offset": offset} if offset else {})},
            json={"q": query},
            headers={"Prefer": "transient"},
            timeout=self.timeout,
        )
        self._check(resp)
        page: dict[str, Any] = resp.json()
        return page

    def ids_by_external_id(self, record_type: str, external_ids: Sequence[str]) -> dict[str, str]:
        """SuiteQL: the internal ids of the records of ``record_type`` NetSuite holds under
        these external ids (those it does not hold are missing from the answer), all pages.
        One request per 1,000 records: how the sink learns what a batch wrote, instead of one
        task result read per record."""
        if not external_ids:
            return {}
        literals = ", ".join("'" + eid.replace("'", "''") + "'" for eid in external_ids)
        type_id = SUITEQL_TRANSACTION_TYPES.get(record_type)
        if record_type == "customer":
            query = f"SELECT id, externalid FROM customer WHERE externalid IN ({literals})"
        elif type_id is not None:
            query = (
                f"SELECT id, externalid FROM transaction WHERE type = '{type_id}' AND "
                f"externalid IN ({literals})"
            )
        else:
            raise ValueError(f"no SuiteQL lookup for {record_type} records")
        found: dict[str, str] = {}
        offset = 0
        while True:
            page = self._suiteql(query, limit=1000, offset=offset)
            items = page.get("items", [])
            for row in items:
                found[str(row["externalid"])] = str(row["id"])
            if not page.get("hasMore") or not items:
                return found
            offset += len(items)

    def verify(self) -> None:
        """A cheap authenticated read (a SuiteQL lookup that matches nothing); raises
        ``NetSuiteResponseError`` with NetSuite's status if it is refused."""
        self.find_id("customer", "externalid", "ledgerstream-credentials-check")

    def internal_id(self, record_type: str, external_id: str) -> str | None:
        """The internal id NetSuite holds ``external_id`` under now (``GET …/eid:…``), or None
        if it holds no such record (404)."""
        try:
            return str(self.get(record_type, f"eid:{external_id}")["id"])
        except NetSuiteResponseError as exc:
            if exc.status == 404:
                return None
            raise

    def get(self, record_type: str, ident: str) -> dict[str, Any]:
        return self.read(f"{RECORD_ROOT}/{record_type}" + (f"/{ident}" if ident else ""))

    def read(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET <REST root><path>`` as JSON (a record, a record list, governanceLimits);
        raises ``NetSuiteResponseError`` with NetSuite's status if it is refused."""
        resp = self.session.get(self.root + path, params=params, timeout=self.timeout)
        self._check(resp)
        body: dict[str, Any] = resp.json()
        return body

    # ----------------------------------------------------------------- batch (asynchronous)
    def batch_upsert(
        self,
        record_type: str,
        items: Sequence[tuple[str, str | Mapping[str, Any]]],
        idempotency_key: str | None,
        replace: list[str] | None = None,
    ) -> str:
        """Submit up to 100 upserts of one record type as one asynchronous batch request
        (``PUT …/{type}`` with ``{"items": [...]}``, each item carrying its ``externalId``;
        Oracle's "Batch Operations", article_0127092747). ``items`` are (external id, body as
        JSON text or a mapping). Returns the job's URL, to pass to ``job_status`` and
        ``job_results``.

        ``idempotency_key`` (a UUID, sent as ``X-NetSuite-idempotency-key``) makes a retry safe:
        NetSuite answers a repeat with 400 ``IDEMPOTENCY_ERROR`` and the first job's
        ``Location`` ("Sending an Asynchronous Request Using an Idempotency Key",
        subsect_164494900632), which this method returns as the job, so a submit whose answer
        was lost can be sent again with the same key. Other refusals raise
        ``NetSuiteResponseError`` (e.g. 400 for more than ``BATCH_MAX_ITEMS`` items)."""
        external_ids = [external_id for external_id, _ in items]
        payload = {"items": [_batch_item(eid, body) for eid, body in items]}
        headers = {"Content-Type": COLLECTION_CONTENT_TYPE, "Prefer": "respond-async"}
        if idempotency_key is not None:
            headers["X-NetSuite-Idempotency-Key"] = idempotency_key
        resp = self.session.put(
            self.url(record_type),
            params={"replace": ",".join(replace)} if replace else None,
            data=simplejson.dumps(payload, use_decimal=True).encode("utf-8"),
            headers=headers,
            timeout=self.timeout,
        )
        location = resp.headers.get("Location", "")
        if resp.status_code == 400 and location and _idempotency_error(resp):
            log.info("batch already submitted under this idempotency key: %s", location)
        else:
            self._check(resp)
            if not location:
                raise NetSuiteResponseError(
                    resp.status_code,
                    "No job in Location",
                    [{"detail": f"HTTP {resp.status_code} without a Location header"}],
                )
        job = urljoin(resp.url, location)
        with self._batches_lock:
            self._batches[job] = external_ids
            self._batches.move_to_end(job)
            while len(self._batches) > 1000:
                self._batches.popitem(last=False)
        return job

    def job_url(self, job: str) -> str:
        """A job's URL from its URL, its path (``/services/rest/async/v1/job/7``) or its id."""
        if job.startswith(("http://", "https://")):
            return job
        if job.startswith("/"):
            return urljoin(self.root + "/", job)
        return f"{self.root}{ASYNC_ROOT}/job/{job}"

    def job_status(self, job: str) -> JobStatus:
        """``GET …/async/v1/job/{id}`` ("Sending an Asynchronous Request",
        subsect_161278579295); raises ``NetSuiteResponseError`` if the read is refused."""
        url = self.job_url(job)
        body = self._get_json(url)
        return JobStatus(
            url=url,
            id=str(body.get("id", "")),
            progress=str(body.get("progress", "")),
            completed=bool(body.get("completed", False)),
            start_time=body.get("startTime"),
            end_time=body.get("endTime"),
        )

    def job_results(
        self, job: str, external_ids: Sequence[str] | None = None
    ) -> dict[str, str | NetSuiteResponseError]:
        """Each item's outcome, by external id: its internal id, or the error its write got
        (a ``NetSuiteResponseError`` with NetSuite's status and ``o:errorDetails``, as the single
        upsert would have raised it). Read once ``job_status(job).done``.

        ``external_ids`` are the items' in the order they were submitted; by default those this
        client submitted under ``job``. Tasks are matched to items by that order (task ids
        ascending), and a result that names its ``externalId`` is filed under it. A failed read
        (429, 401, 5xx, a connection error) raises, and nothing is returned: read again."""
        url = self.job_url(job)
        if external_ids is None:
            with self._batches_lock:
                remembered = self._batches.get(url)
            if remembered is None:
                raise NetSuiteBatchError(f"no items are known for {url}: pass external_ids")
            external_ids = remembered
        tasks = self._job_tasks(url)
        if len(tasks) != len(external_ids):
            raise NetSuiteBatchError(
                f"{url} has {len(tasks)} tasks for {len(external_ids)} submitted items"
            )
        out: dict[str, str | NetSuiteResponseError] = {}
        for (_task_id, task_url), external_id in zip(tasks, external_ids, strict=True):
            result = self._task_result(task_url)
            if isinstance(result, NetSuiteResponseError):
                out[external_id] = result
                continue
            internal_id, named = result
            out[named or external_id] = internal_id
        return out

    def _job_tasks(self, url: str) -> list[tuple[int, str]]:
        """(task id, task URL) of every task of the job, ascending, across pages."""
        tasks: list[tuple[int, str]] = []
        offset = 0
        while True:
            page = self._get_json(f"{url}/task", params={"offset": offset} if offset else None)
            items = list(page.get("items", []))
            for item in items:
                task_id = str(item.get("id", ""))
                href = next(
                    (
                        link.get("href")
                        for link in item.get("links", [])
                        if link.get("rel") == "self"
                    ),
                    None,
                )
                if not task_id.isdigit():
                    raise NetSuiteBatchError(f"{url}: a task without a numeric id: {item!r}")
                tasks.append((int(task_id), str(href or f"{url}/task/{task_id}")))
            if not page.get("hasMore") or not items:
                break
            offset += len(items)
        return sorted(tasks)

    def _task_result(self, task_url: str) -> tuple[str, str | None] | NetSuiteResponseError:
        """(internal id, externalId if named) of a written item, or the error of a failed one.

        An error answer is the item's own only when the task says it failed; otherwise the read
        itself was refused (throttled, a fault) and the error is raised."""
        resp = self.session.get(f"{task_url}/result", timeout=self.timeout)
        if resp.status_code >= 300:
            try:
                self._check(resp)
            except NetSuiteResponseError as exc:
                task = self._get_json(task_url)
                if str(task.get("progress", "")).lower() == "failed":
                    return exc
                raise
        location = resp.headers.get("Location", "")
        body: dict[str, Any] = resp.json() if resp.content else {}
        self_link = next(
            (link.get("href", "") for link in body.get("links", []) if link.get("rel") == "self"),
            "",
        )
        for candidate in (location, str(body.get("id", "")), self_link):
            internal_id = candidate.rstrip("/").rsplit("/", 1)[-1]
            if internal_id.isdigit():
                named = body.get("externalId")
                return internal_id, str(named) if named is not None else None
        raise NetSuiteResponseError(
            resp.status_code,
            "No internal id in the task result",
            [{"detail": f"result of {task_url} names no record: {body!r}"[:500]}],
        )

    def _get_json(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = self.session.get(url, params=params, timeout=self.timeout)
        self._check(resp)
        body: dict[str, Any] = resp.json()
        return body

    def _check(self, resp: requests.Response) -> None:
        if resp.status_code < 300:
            return
        if resp.status_code == 401 and self.m2m is not None:
            sent = str(resp.request.headers.get("Authorization", ""))
            self.m2m.invalidate(sent.removeprefix("Bearer "))
        try:
            body = resp.json()
        except ValueError:
            body = {}
        raise NetSuiteResponseError(
            resp.status_code,
            str(body.get("title", resp.reason)),
            list(body.get("o:errorDetails", [])),
        )


def _batch_item(external_id: str, body: str | Mapping[str, Any]) -> dict[str, Any]:
    """One batch item: the record's fields with its ``externalId`` (PUT items are matched by
    external id: "PUT requests only support external ID for the upsert operation")."""
    fields = simplejson.loads(body, use_decimal=True) if isinstance(body, str) else dict(body)
    if not isinstance(fields, dict):
        raise ValueError(f"the body of {external_id!r} is not a JSON object")
    named = fields.get("externalId")
    if named is not None and str(named) != external_id:
        raise ValueError(f"the body of {external_id!r} names externalId {named!r}")
    fields["externalId"] = external_id
    return fields


def _idempotency_error(resp: requests.Response) -> bool:
    try:
        details = resp.json().get("o:errorDetails", [])
    except ValueError:
        return False
    return any(d.get("o:errorCode") == "IDEMPOTENCY_ERROR" for d in details)
