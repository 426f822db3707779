"""A stateful Stripe API test double that serves one generated history.

stripe-mock proves that a request is a valid Stripe API call, but it stores nothing and answers
fixtures. This double answers the endpoints the pipeline reads and writes from a consistent
history (``ledgerstream.testing.generator``), in Stripe's response shapes:

- ``GET /v1/events`` (+ ``/v1/events/{id}``): newest first, ``limit``, ``starting_after``,
  ``ending_before``, ``created[gt|gte|lt|lte]``, ``types[]``;
- ``GET /v1/{customers|invoices|charges|refunds|disputes|credit_notes|payouts|prices}`` and the
  objects by id, with the same paging and ``created`` filters, and ``expand[]`` of
  ``balance_transaction``, ``charge`` and (balance transactions) ``source``;
- ``GET /v1/balance_transactions?payout=po_…`` (+ by id);
- ``GET /v1/invoices/{id}/lines``: every line of the invoice, in its order, with the same
  paging (``limit``, ``starting_after``, ``ending_before``): from ``History.invoice_lines``
  for an invoice that embeds only its first lines (``lines.has_more``), else the embedded ones;
- ``POST /v1/{type}/{id}`` with ``metadata[key]=value``: stored, and returned as Stripe would;
- ``Authorization: Bearer sk_…`` required; an optional request-rate limit answers 429 like
  Stripe (``rate_limit_error``).

It can also deliver the history's events as signed webhooks (``deliver_webhooks``).
Not Stripe: ``GET /_double/stats`` (request counts) and ``GET /_double/metadata/{id}``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ledgerstream.testing.generator import History

LISTS = {
    "customers": "customer",
    "invoices": "invoice",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "credit_notes": "credit_note",
    "payouts": "payout",
    "prices": "price",
    "coupons": "coupon",
}
MAX_LIMIT = 100


def _error(status: int, kind: str, message: str, code: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"type": kind, "message": message}}
    if code:
        body["error"]["code"] = code
    return web.json_response(body, status=status)


def _expand_params(query: Any) -> set[str]:
    """``expand[]=a`` and the SDK's ``expand[0]=a`` forms."""
    return {v for k, v in query.items() if k == "expand[]" or k.startswith("expand[")}


class RateLimiter:
    """Token bucket: ``rate`` requests per second, bursts up to ``rate``."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.tokens = rate or 0.0
        self.last = time.monotonic()

    def allow(self) -> bool:
        if not self.rate:
            return True
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class StripeDouble:
    def __init__(self, history: History, rate_limit: float | None = None):
        self.history = history
        self.objects: dict[str, dict[str, Any]] = copy.deepcopy(history.objects)
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for obj in self.objects.values():
            self.by_type.setdefault(obj["object"], []).append(obj)
        for items in self.by_type.values():
            items.sort(key=lambda o: (int(o.get("created", 0)), o["id"]), reverse=True)
        # Stripe lists newest first: the exact reverse of the history's (created, id) order
        self.events = sorted(history.events, key=lambda e: (e["created"], e["id"]), reverse=True)
        self.event_index = {e["id"]: e for e in history.events}
        self.limiter = RateLimiter(rate_limit)
        self.stats: Counter[str] = Counter()
        # events created after the horizon are not listed yet: tests move it to make "new"
        # events appear, as after an outage
        self.horizon: int | None = None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _created_filter(query: Any) -> Any:
        bounds = {
            op: int(query[f"created[{op}]"])
            for op in ("gt", "gte", "lt", "lte")
            if f"created[{op}]" in query
        }
        if "created" in query:
            bounds["eq"] = int(query["created"])

        def keep(item: dict[str, Any]) -> bool:
            c = int(item.get("created", 0))
            return (
                ("gt" not in bounds or c > bounds["gt"])
                and ("gte" not in bounds or c >= bounds["gte"])
                and ("lt" not in bounds or c < bounds["lt"])
                and ("lte" not in bounds or c <= bounds["lte"])
                and ("eq" not in bounds or c == bounds["eq"])
            )

        return keep

    def _page(self, request: web.Request, items: list[dict[str, Any]], url: str) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "10"))
        except ValueError:
            return _error(
                400, "invalid_request_error", "Invalid integer: limit", "parameter_invalid_integer"
            )
        if not 1 <= limit <= MAX_LIMIT:
            return _error(
                400,
                "invalid_request_error",
                "This value must be between 1 and 100.",
                "parameter_invalid_integer",
            )
        keep = self._created_filter(query)
        items = [i for i in items if keep(i)]
        after, before = query.get("starting_after"), query.get("ending_before")
        if after and before:
            return _error(
                400,
                "invalid_request_error",
                "You may only specify one of these parameters: ending_before, starting_after.",
            )
        ids = [i["id"] for i in items]
        if after:
            if after not in ids:
                return _error(
                    400, "invalid_request_error", f"No such object: '{after}'", "resource_missing"
                )
            start = ids.index(after) + 1
            page, has_more = items[start : start + limit], start + limit < len(items)
        elif before:
            if before not in ids:
                return _error(
                    400, "invalid_request_error", f"No such object: '{before}'", "resource_missing"
                )
            end = ids.index(before)
            page, has_more = items[max(0, end - limit) : end], end - limit > 0
        else:
            page, has_more = items[:limit], limit < len(items)
        expand = _expand_params(query)
        data = [self._expand(item, {e.removeprefix("data.") for e in expand}) for item in page]
        return web.json_response({"object": "list", "data": data, "has_more": has_more, "url": url})

    def _expand(self, item: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        if not fields:
            return item
        out = dict(item)
        for name in fields:
            value = out.get(name)
            if isinstance(value, str):
                target = self.objects.get(value) or self.history.balance_transactions.get(value)
                if target is not None:
                    out[name] = target
        return out

    # ------------------------------------------------------------------ handlers
    @web.middleware
    async def gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_double/"):
            return await handler(request)
        parts = request.path.strip("/").split("/")
        self.stats[f"{request.method} /{'/'.join(parts[:2])}"] += 1
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk_"):
            return _error(401, "invalid_request_error", "You did not provide an API key.")
        if not self.limiter.allow():
            self.stats["429"] += 1
            return _error(
                429, "rate_limit_error", "Too many requests hit the API too quickly.", "rate_limit"
            )
        return await handler(request)

    async def list_events(self, request: web.Request) -> web.Response:
        types = {v for k, v in request.query.items() if k.startswith("types[")} or (
            {request.query["type"]} if "type" in request.query else set()
        )
        events = [
            e
            for e in self.events
            if (not types or e["type"] in types)
            and (self.horizon is None or e["created"] <= self.horizon)
        ]
        return self._page(request, events, "/v1/events")

    async def get_event(self, request: web.Request) -> web.Response:
        event = self.event_index.get(request.match_info["id"])
        if event is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such event: '{request.match_info['id']}'",
                "resource_missing",
            )
        return web.json_response(event)

    async def list_objects(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind not in LISTS:
            return _error(
                404, "invalid_request_error", f"Unrecognized request URL (GET: /v1/{kind})"
            )
        return self._page(request, self.by_type.get(LISTS[kind], []), f"/v1/{kind}")

    def _lookup(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The object named by ``/v1/{kind}/{id}``, or Stripe's 404."""
        kind, oid = request.match_info["kind"], request.match_info["id"]
        obj = self.objects.get(oid)
        if kind not in LISTS or obj is None or obj["object"] != LISTS[kind]:
            return _error(
                404,
                "invalid_request_error",
                f"No such {LISTS.get(kind, kind)}: '{oid}'",
                "resource_missing",
            )
        return obj

    async def get_object(self, request: web.Request) -> web.Response:
        obj = self._lookup(request)
        if isinstance(obj, web.Response):
            return obj
        return web.json_response(self._expand(obj, _expand_params(request.query)))

    async def update_object(self, request: web.Request) -> web.Response:
        obj = self._lookup(request)
        if isinstance(obj, web.Response):
            return obj
        form = await request.post()
        metadata = dict(obj.get("metadata") or {})
        for key, value in form.items():
            if not key.startswith("metadata[") or not key.endswith("]"):
                return _error(
                    400,
                    "invalid_request_error",
                    f"Received unknown parameter: {key}",
                    "parameter_unknown",
                )
            name = key[len("metadata[") : -1]
            if len(name) > 40 or len(str(value)) > 500:
                return _error(
                    400,
                    "invalid_request_error",
                    "Metadata key or value too long",
                    "parameter_invalid_string",
                )
            if value == "":
                metadata.pop(name, None)
            else:
                metadata[name] = str(value)
        if len(metadata) > 50:
            return _error(400, "invalid_request_error", "Metadata can have at most 50 keys")
        obj["metadata"] = metadata
        return web.json_response(obj)

    async def list_invoice_lines(self, request: web.Request) -> web.Response:
        invoice_id = request.match_info["id"]
        invoice = self.objects.get(invoice_id)
        if invoice is None or invoice["object"] != "invoice":
            return _error(
                404, "invalid_request_error", f"No such invoice: '{invoice_id}'", "resource_missing"
            )
        lines = self.history.invoice_lines.get(invoice_id, invoice["lines"]["data"])
        return self._page(request, lines, f"/v1/invoices/{invoice_id}/lines")

    async def list_balance_transactions(self, request: web.Request) -> web.Response:
        payout = request.query.get("payout")
        txns = self.history.balance_transactions
        if payout:
            if payout not in self.history.payout_transactions:
                return _error(
                    404, "invalid_request_error", f"No such payout: '{payout}'", "resource_missing"
                )
            items = [txns[t] for t in self.history.payout_transactions[payout]]
        else:
            items = sorted(txns.values(), key=lambda t: (int(t["created"]), t["id"]), reverse=True)
        return self._page(request, items, "/v1/balance_transactions")

    async def get_balance_transaction(self, request: web.Request) -> web.Response:
        txn = self.history.balance_transactions.get(request.match_info["id"])
        if txn is None:
            return _error(
                404, "invalid_request_error", "No such balance transaction", "resource_missing"
            )
        return web.json_response(txn)

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats))

    async def metadata_view(self, request: web.Request) -> web.Response:
        obj = self.objects.get(request.match_info["id"])
        if obj is None:
            return web.json_response({"error": "no such object"}, status=404)
        return web.json_response(obj.get("metadata") or {})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate])
        app.router.add_get("/v1/events", self.list_events)
        app.router.add_get("/v1/events/{id}", self.get_event)
        app.router.add_get("/v1/balance_transactions", self.list_balance_transactions)
        app.router.add_get("/v1/balance_transactions/{id}", self.get_balance_transaction)
        app.router.add_get("/v1/invoices/{id}/lines", self.list_invoice_lines)
        app.router.add_get("/v1/{kind}", self.list_objects)
        app.router.add_get("/v1/{kind}/{id}", self.get_object)
        app.router.add_post("/v1/{kind}/{id}", self.update_object)
        app.router.add_get("/_double/stats", self.stats_view)
        app.router.add_get("/_double/metadata/{id}", self.metadata_view)
        return app


async def deliver_webhooks(
    url: str, secret: str, events: Iterable[dict[str, Any]], concurrency: int = 8
) -> Counter[int]:
    """POST each event as Stripe would (signed); return the count of each status code."""
    import aiohttp

    from ledgerstream.testing.fixtures import signed

    codes: Counter[int] = Counter()
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(event: dict[str, Any]) -> None:
            body, header = signed(event, secret)
            async with (
                semaphore,
                session.post(
                    url,
                    data=body,
                    headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                ) as resp,
            ):
                codes[resp.status] += 1

        await asyncio.gather(*(one(e) for e in events))
    return codes


def serve(history: History, host: str, port: int, rate_limit: float | None = None) -> None:
    web.run_app(
        StripeDouble(history, rate_limit).app(), host=host, port=port, print=None, access_log=None
    )
