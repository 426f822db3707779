"""SuiteTalk REST client: OAuth 1.0a token-based auth and ``PUT eid:`` upserts.

Signing is requests-oauthlib's (HMAC-SHA256, ``realm`` = account id, RFC 5849 encoding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from ledgerstream import settings

log = logging.getLogger(__name__)

RECORD_ROOT = "/services/rest/record/v1"


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


class NetSuiteClient:
    def __init__(self, cfg: settings.NetSuiteSettings | None = None):
        cfg = cfg or settings.netsuite()
        cfg.require_credentials()
        assert cfg.netsuite_consumer_key and cfg.netsuite_consumer_secret
        assert cfg.netsuite_token_id and cfg.netsuite_token_secret
        self.root = cfg.rest_root()
        self.timeout = cfg.netsuite_timeout_s
        self.session = requests.Session()
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

    def get(self, record_type: str, ident: str) -> dict[str, Any]:
        resp = self.session.get(self.url(record_type, ident), timeout=self.timeout)
        self._check(resp)
        body: dict[str, Any] = resp.json()
        return body

    @staticmethod
    def _check(resp: requests.Response) -> None:
        if resp.status_code < 300:
            return
        try:
            body = resp.json()
        except ValueError:
            body = {}
        raise NetSuiteResponseError(
            resp.status_code,
            str(body.get("title", resp.reason)),
            list(body.get("o:errorDetails", [])),
        )
