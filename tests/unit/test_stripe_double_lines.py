"""GET /v1/invoices/{id}/lines on the Stripe double: every line of an invoice, page by page."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledgerstream.testing.generator import EMBEDDED_LINES, History, Scenario, generate
from ledgerstream.testing.stripe_double import StripeDouble

AUTH = {"Authorization": "Bearer sk_test_x"}


@cache
def long_history() -> History:
    # every invoice is long: 25 or 250 lines
    return generate(Scenario(seed=11, customers=4, months=2, long_invoice_rate=1.0))


def answers(history: History, paths: list[str]) -> list[tuple[int, Any]]:
    async def go() -> list[tuple[int, Any]]:
        async with TestClient(TestServer(StripeDouble(history).app())) as client:
            out = []
            for path in paths:
                resp = await client.get(path, headers=AUTH)
                out.append((resp.status, await resp.json()))
            return out

    return asyncio.run(go())


def pages(history: History, invoice_id: str, limit: int | None) -> list[dict[str, Any]]:
    """Every page of the invoice's lines, following ``starting_after`` as a client would."""

    async def go() -> list[dict[str, Any]]:
        async with TestClient(TestServer(StripeDouble(history).app())) as client:
            out: list[dict[str, Any]] = []
            params: dict[str, str | int] = {} if limit is None else {"limit": limit}
            while True:
                resp = await client.get(
                    f"/v1/invoices/{invoice_id}/lines", params=params, headers=AUTH
                )
                assert resp.status == 200
                page = await resp.json()
                out.append(page)
                if not page["has_more"]:
                    return out
                params["starting_after"] = page["data"][-1]["id"]

    return asyncio.run(go())


def invoice_with(history: History, count: int) -> str:
    return next(i for i, lines in history.invoice_lines.items() if len(lines) == count)


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [
        (25, 10, [10, 10, 5]),
        (25, None, [10, 10, 5]),  # Stripe's default page
        (25, 100, [25]),
        (250, 100, [100, 100, 50]),
        (250, 10, [10] * 25),
    ],
)
def test_the_lines_come_page_by_page_in_the_invoices_order(
    count: int, limit: int | None, sizes: list[int]
) -> None:
    h = long_history()
    invoice_id = invoice_with(h, count)
    got = pages(h, invoice_id, limit)
    assert [len(p["data"]) for p in got] == sizes
    assert [p["has_more"] for p in got] == [True] * (len(sizes) - 1) + [False]
    assert all(p["object"] == "list" for p in got)
    assert all(p["url"] == f"/v1/invoices/{invoice_id}/lines" for p in got)
    assert [line for p in got for line in p["data"]] == h.invoice_lines[invoice_id]
    # the first page is what the invoice embeds
    embedded = h.objects[invoice_id]["lines"]
    assert embedded["data"] == got[0]["data"][:EMBEDDED_LINES]
    assert embedded["has_more"] is True and embedded["total_count"] == count


def test_ending_before_pages_backwards() -> None:
    h = long_history()
    invoice_id = invoice_with(h, 25)
    lines = h.invoice_lines[invoice_id]
    url = f"/v1/invoices/{invoice_id}/lines"
    (status, page), (_, first) = answers(
        h,
        [
            f"{url}?limit=10&ending_before={lines[20]['id']}",
            f"{url}?ending_before={lines[4]['id']}",
        ],
    )
    assert status == 200 and page["data"] == lines[10:20] and page["has_more"] is True
    assert first["data"] == lines[:4] and first["has_more"] is False


def test_an_invoice_that_embeds_every_line_lists_those() -> None:
    h = generate(Scenario(seed=11, customers=4, months=2))
    assert not h.invoice_lines
    invoice = next(o for o in h.objects.values() if o["object"] == "invoice")
    [(status, page)] = answers(h, [f"/v1/invoices/{invoice['id']}/lines"])
    assert status == 200
    assert page["data"] == invoice["lines"]["data"] and page["has_more"] is False


def test_unknown_invoice_bad_cursor_and_bad_limit() -> None:
    h = long_history()
    invoice_id = invoice_with(h, 25)
    charge = next(o["id"] for o in h.objects.values() if o["object"] == "charge")
    got = answers(
        h,
        [
            "/v1/invoices/in_nope/lines",
            f"/v1/invoices/{charge}/lines",
            f"/v1/invoices/{invoice_id}/lines?starting_after=il_nope",
            f"/v1/invoices/{invoice_id}/lines?limit=101",
        ],
    )
    assert got[0] == (
        404,
        {
            "error": {
                "type": "invalid_request_error",
                "message": "No such invoice: 'in_nope'",
                "code": "resource_missing",
            }
        },
    )
    assert got[1][0] == 404 and got[1][1]["error"]["code"] == "resource_missing"
    assert got[2][0] == 400 and got[2][1]["error"]["code"] == "resource_missing"
    assert got[3][0] == 400
