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
from dataclasses import dataclass
from typing import Any

import requests
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
# the integration's concurrency limits (Oracle's NetSuite help: "GovernanceLimits Operation")
GOVERNANCE_PATH = "/services/rest/system/v1/governanceLimits"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


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
        resp = self.session.post(
            f"{self.root}{SUITEQL_PATH}",
            params={"limit": 1},
            json={"q": query},
            headers={"Prefer": "transient"},
            timeout=self.timeout,
        )
        self._check(resp)
        items = resp.json().get("items", [])
        return str(items[0]["id"]) if items else None

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
