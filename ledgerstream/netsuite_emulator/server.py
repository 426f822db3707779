"""HTTP front of the NetSuite REST emulator.

What it does as NetSuite does:
- URL shape ``/services/rest/record/v1/{recordType}[/{id}|/eid:{externalId}]``;
- OAuth 1.0a token-based auth, HMAC-SHA256 with ``realm`` = account id, verified with oauthlib:
  a wrong key, token or signature gets 401 ``INVALID_LOGIN``;
- ``PUT …/eid:{externalId}`` creates or updates (upsert); ``POST`` creates; both answer
  **204 No Content** with the record URL in ``Location``; ``GET`` reads; a record-type ``GET``
  lists ids with ``limit``/``offset`` paging;
- external ids only of letters, digits, ``_`` and ``-``;
- references ``{"id": …}`` must name existing records of the right type, else 400 with
  ``o:errorDetails`` (``detail``, ``o:errorCode``, ``o:errorPath``);
- on update, a sublist is replaced only when named in ``?replace=``, otherwise its lines are
  added to the existing ones (so a client that forgets ``replace`` duplicates lines, as it would
  on NetSuite).

Not NetSuite: ``GET /_emulator/records`` lists stored records in full and
``POST /_emulator/reset`` empties the store (tests and the demo use them).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from ledgerstream.netsuite_emulator.store import Record, Store, dumps, loads

log = logging.getLogger(__name__)

ROOT = "/services/rest/record/v1"
EID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ITEM_TYPES = ("serviceSaleItem", "discountItem", "nonInventorySaleItem", "otherChargeSaleItem")
TRANSACTION_TYPES = ("invoice", "customerPayment", "creditMemo", "customerRefund")


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
    "journalEntry": RecordRules(sublists=("line",)),
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
    account: str
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str


def verify_oauth1(request: web.Request, body: bytes, creds: Credentials) -> None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("OAuth "):
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
    def __init__(self, store: Store, creds: Credentials):
        self.store = store
        self.creds = creds
        self.requests: Counter[str] = Counter()

    # ----------------------------------------------------------------- validation
    def validate(self, rtype: str, body: dict[str, Any], creating: bool) -> None:
        rules = RULES[rtype]
        if creating:
            for name in rules.required:
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

    # ----------------------------------------------------------------- operations
    def upsert(self, rtype: str, eid: str, body: dict[str, Any], replace: set[str]) -> Record:
        body = {k: v for k, v in body.items() if k not in ("id", "externalId", "links")}
        existing = self.store.get_by_eid(rtype, eid)
        self.validate(rtype, body, creating=existing is None)
        if existing is None:
            return self.store.create(rtype, eid, body)
        return self.store.update(existing, self.merge(rtype, existing.fields, body, replace))

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

    # ----------------------------------------------------------------- HTTP
    def location(self, request: web.Request, record: Record) -> str:
        return f"{request.scheme}://{request.host}{ROOT}/{record.type}/{record.id}"

    async def handle(self, request: web.Request) -> web.Response:
        body_bytes = await request.read()
        try:
            verify_oauth1(request, body_bytes, self.creds)
            response = self.dispatch(request, body_bytes)
        except NetSuiteError as exc:
            response = exc.response()
        self.requests[f"{request.method} {response.status}"] += 1
        return response

    def dispatch(self, request: web.Request, body_bytes: bytes) -> web.Response:
        rtype = request.match_info["type"]
        ident = request.match_info.get("ident")
        if rtype not in RULES:
            raise NetSuiteError(
                404, "NONEXISTENT_RCRD_TYPE", f"Record type '{rtype}' does not exist."
            )
        if ident is None:
            if request.method == "POST":
                body = self._json(body_bytes)
                self.validate(rtype, body, creating=True)
                eid = body.get("externalId")
                if eid is not None and self.store.get_by_eid(rtype, str(eid)):
                    raise NetSuiteError(
                        400, "DUP_RCRD", "A record with this external ID already exists."
                    )
                fields = {k: v for k, v in body.items() if k not in ("id", "externalId")}
                created = self.store.create(rtype, eid, fields)
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
        raise NetSuiteError(405, "INVALID_REQUEST", f"{request.method} is not supported yet")

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
        self.requests.clear()
        return web.json_response({"reset": True})


def make_app(store: Store, creds: Credentials) -> web.Application:
    emu = Emulator(store, creds)
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_route("*", ROOT + "/{type}", emu.handle)
    app.router.add_route("*", ROOT + "/{type}/{ident}", emu.handle)
    app.router.add_get("/_emulator/records", emu.admin_records)
    app.router.add_post("/_emulator/reset", emu.admin_reset)
    app.on_cleanup.append(lambda _app: _close(store))
    return app


async def _close(store: Store) -> None:
    store.close()


def credentials_from_settings() -> Credentials:
    from ledgerstream import settings

    ns = settings.netsuite()
    ns.require_credentials()
    assert ns.netsuite_consumer_key and ns.netsuite_consumer_secret
    assert ns.netsuite_token_id and ns.netsuite_token_secret
    return Credentials(
        account=ns.netsuite_account_id,
        consumer_key=ns.netsuite_consumer_key.get_secret_value(),
        consumer_secret=ns.netsuite_consumer_secret.get_secret_value(),
        token_id=ns.netsuite_token_id.get_secret_value(),
        token_secret=ns.netsuite_token_secret.get_secret_value(),
    )


def serve(host: str, port: int, data: str | Path) -> None:
    """Serve with the credentials of the LEDGER_NETSUITE_* settings (the sink's own)."""
    app = make_app(Store(data), credentials_from_settings())
    web.run_app(app, host=host, port=port, print=None, access_log=None)
