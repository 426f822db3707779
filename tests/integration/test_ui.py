"""``ledgerstream ui`` in a real browser: Debian's chromium, headless, driven by Playwright, on a
whole pipeline over the local stack. It searches for the customer, finds a refused payment on
the dead-letter page, presses its redrive button once NetSuite accepts it again, and sees the
payment reach NetSuite. Screenshots of each step are kept in ``$LEDGER_TEST_ARTIFACTS`` (default
``test-artifacts/ui/`` in the checkout), one folder per test.

Chromium comes from Debian (``scripts/browser``, run by ``make test``, installs it), never from
``playwright install``; without it the test fails, it is not skipped."""

from __future__ import annotations

import collections.abc
import json
import os
import re
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from ledgerstream import settings
from ledgerstream.money import to_decimal
from ledgerstream.stripe_records import route
from ledgerstream.testing.fixtures import slice_events
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import AppThread, Pipeline, free_port
from ledgerstream.testing.reference import reference_booking
from ledgerstream.testing.stripe_double import StripeDouble
from tests import CHECKOUT
from tests.integration.helpers import ACCOUNTING_ENV, wait_pipeline_caught_up
from tests.integration.test_slice import deliver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

# no first-run, sync, component-update or other background requests: with no route to the
# internet chromium otherwise stalls on refused connections
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = os.environ.get("LEDGER_CHROMIUM", "/usr/bin/chromium")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"no chromium at {path}: `scripts/browser` installs Debian's package chromium "
            "(`make test` runs it), or set LEDGER_CHROMIUM to a chromium binary"
        )
    return path


def artifacts() -> Path:
    where = Path(os.environ.get("LEDGER_TEST_ARTIFACTS") or CHECKOUT / "test-artifacts" / "ui")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def page() -> collections.abc.Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            tab = context.new_page()
            tab.set_default_timeout(30_000)  # one page load, click or assertion at most
            yield tab
        finally:
            browser.close()


class Shots:
    """Numbered full-page screenshots, their paths printed (pytest shows them with -s or on a
    failure)."""

    def __init__(self, page: Page, test: str) -> None:
        self.page = page
        self.dir = artifacts() / test
        self.dir.mkdir(exist_ok=True)
        self.n = 0
        for old in self.dir.glob("[0-9][0-9]-*.png"):  # an earlier run's, not to be mistaken
            old.unlink()

    def __call__(self, name: str) -> Path:
        self.n += 1
        path = self.dir / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


def wait_for_page(pipeline: Pipeline, url: str, *wanted: str, timeout: float = 90) -> str:
    """The page at ``url`` once its HTML matches every pattern of ``wanted`` (regular
    expressions; asked again every 0.3 s until the deadline, a component that died fails it
    at once). What the browser then loads shows at least that much: the page's table only
    grows towards the topic's latest values."""
    deadline = time.monotonic() + timeout
    while True:
        pipeline.check_alive()
        text = requests.get(url, timeout=30).text
        if all(re.search(pattern, text) for pattern in wanted):
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not show {wanted} in {timeout:.0f} s:\n{text}")
        time.sleep(0.3)


def behave(pipeline: Pipeline, **changes: object) -> None:
    answer = requests.post(f"{pipeline.emulator_url}/_emulator/behaviour", json=changes, timeout=5)
    answer.raise_for_status()


def test_status_page_search_dead_letter_and_redrive_in_a_browser(
    pipeline: Pipeline, page: Page
) -> None:
    shot = Shots(page, "search-and-redrive")
    pipeline.start_all()
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    pipeline.start("ui", "ui", "--port", str(port))
    # ready once it has read the status topic up to where it ended when it started
    pipeline.wait_http(f"{ui}/readyz", "ui")
    events = slice_events(seed=pipeline.name)
    cus, inv, ch = (e["data"]["object"]["id"] for e in events[:3])
    pages: list[str] = []
    try:
        # the customer and its invoice (a customer is written at its first transaction),
        # while NetSuite accepts everything
        assert deliver(pipeline, events[:2]) == [200, 200]
        records = pipeline.wait_for_records({"customer": 1, "invoice": 1})
        customer = next(r for r in records if r["type"] == "customer")
        written = f"NetSuite customer {cus} internal id {customer['id']}"
        # the sink reports the write to the status topic after NetSuite answered: wait until
        # the page's table has read it
        wait_for_page(pipeline, f"{ui}/object/{cus}", re.escape(written))

        page.goto(ui + "/")
        expect(page.locator("#recent")).to_contain_text(cus)
        shot("overview")
        page.fill("#search", cus)
        page.click("#search-button")
        page.wait_for_url(f"{ui}/object/{cus}")
        expect(page.locator("#entries")).to_contain_text(written)
        link = page.get_by_role("link", name="open in NetSuite")
        expect(link).to_have_attribute("href", re.compile(rf"\?id={customer['id']}$"))
        pages.append(page.content())
        shot("customer-written")

        # NetSuite refuses every write from now on (a set-up fault), once every command of
        # the first two events has been handled (written or not: none may meet the fault)
        wait_pipeline_caught_up(pipeline)
        behave(pipeline, error_rates={"400": 1.0})
        assert deliver(pipeline, events[2:]) == [200, 200]
        # the sink dead-letters the payment after NetSuite's 400 and reports the failure to
        # the status topic: wait until the page's table has read it, and the dead letter is
        # on the .dlq topic the dead-letter page reads
        wait_for_page(pipeline, f"{ui}/object/{ch}", 'id="object-state">failed<')
        wait_for_page(pipeline, f"{ui}/dlq", f'href="/object/{ch}"')
        page.goto(f"{ui}/object/{ch}")
        expect(page.locator("#object-state")).to_have_text("failed")
        expect(page.locator("#entries")).to_contain_text("HTTP 400")
        expect(page.locator("#entries")).to_contain_text(f"{pipeline.prefix}netsuite.commands.dlq")
        pages.append(page.content())
        shot("payment-failed")

        page.click("text=Dead letters")
        page.wait_for_url(f"{ui}/dlq")
        expect(page.locator("main")).to_contain_text("1 dead letter, 1 not redriven")
        letter = page.locator("tr[data-ref]", has=page.locator(f'a[href="/object/{ch}"]'))
        expect(letter).to_have_count(1)
        expect(letter).to_contain_text("Injected validation error.")
        expect(letter.locator("td").first).to_contain_text(f"{pipeline.prefix}netsuite.commands")
        pages.append(page.content())
        shot("dead-letter")

        behave(pipeline, error_rates={})  # fixed
        letter.locator("button.redrive").click()
        page.wait_for_url(re.compile(r"/dlq\?redriven="))
        expect(page.locator("#redrive-result")).to_contain_text("1 redriven;")
        expect(letter).to_contain_text("redriven")  # marked, its button gone
        expect(letter.locator("button.redrive")).to_have_count(0)
        pages.append(page.content())
        shot("redriven")
        records = pipeline.wait_for_records({"customer": 1, "invoice": 1, "customerPayment": 1})
        payment = next(r for r in records if r["type"] == "customerPayment")
        assert payment["externalId"] == ch and len(records) == 3

        # written once the sink reported it, and the failure it had is gone: the sink's
        # tombstone of it may be on another partition than the write, so wait for both
        wait_for_page(
            pipeline,
            f"{ui}/object/{ch}",
            re.escape(f"NetSuite customerPayment {ch} internal id {payment['id']}"),
            'id="object-state">(written|backref)<',
        )
        page.goto(f"{ui}/object/{ch}")
        expect(page.locator("#entries")).not_to_contain_text("FAILED")
        expect(page.locator("#object-state")).to_have_text(re.compile("^(written|backref)$"))
        shot("payment-written")

        page.goto(ui + "/")
        page.click('.filters a[href="/?state=failed"]')
        expect(page.locator("main")).to_contain_text("Nothing failed yet.")
        page.goto(ui + "/payouts")
        # the slice has no payout (its four events: customer, invoice, charge, invoice paid)
        expect(page.locator("#no-payouts")).to_be_visible()
        shot("payouts")

        page.goto(ui + "/health")
        for component in ("router", "processor", "sink", "metadata"):
            section = page.locator(f'section[data-component="{component}"]')
            expect(section.locator(".members")).to_have_text("1 member")
        expect(page.locator('section[data-component="sink"]')).to_contain_text(
            f"{pipeline.name}-netsuite-sink"
        )
        pages.append(page.content())
        shot("health")
    except BaseException:
        shot("failed")
        raise
    secrets = [v for k, v in pipeline.netsuite.items() if not k.endswith("_FILE")]
    secrets.append(pipeline.webhook_secret)
    for html in pages:
        for secret in secrets:
            assert secret not in html


def test_payouts_page_shows_each_deposit_balanced_against_its_payout(
    tmp_path: Path, page: Page
) -> None:
    """A generated merchant with payouts in two currencies (one of them converted from a
    third), refunds and disputes: every payout on the page with its deposit's lines, the total
    equal to the payout and ✔, as the reference booking says."""
    history = generate(
        Scenario(
            seed=5,  # 3 USD and 2 JPY payouts, EUR converted to USD, a refund and a dispute
            customers=4,
            months=1,
            currencies=("usd", "eur", "jpy"),
            settlement_currencies=("usd", "jpy"),
            refund_rate=0.2,
            dispute_rate=0.1,
        )
    )
    stripe = AppThread(StripeDouble(history).app())
    env = {
        **ACCOUNTING_ENV,
        "LEDGER_STRIPE_API_BASE": stripe.url,
        "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
    }
    pipeline = Pipeline(tmp_path / "run", extra_env=env)
    shot = Shots(page, "payouts")
    try:
        pipeline.start_all()
        port = free_port()
        ui = f"http://127.0.0.1:{port}"
        pipeline.start("ui", "ui", "--port", str(port))
        pipeline.wait_http(f"{ui}/readyz", "ui")  # it has read the status topic to its end
        events = [e for e in history.events if route(e["type"]) is not None]
        assert set(deliver(pipeline, events)) == {200}
        # the pipeline's bank accounts, given to the settings (not put in this process's
        # environment, where later tests would read them)
        banks = json.loads(ACCOUNTING_ENV["LEDGER_NETSUITE_BANK_ACCOUNT_IDS"])
        book = reference_booking(
            history, settings.AccountingSettings(netsuite_bank_account_ids=banks)
        )
        deposits = [c for c in book.commands.values() if c.record_type == "deposit"]
        payouts = {c.stripe_id: history.objects[c.stripe_id] for c in deposits}
        assert len(payouts) >= 4 and {p["currency"] for p in payouts.values()} == {"usd", "jpy"}
        pipeline.wait_for_records({"deposit": len(deposits)})
        # the sink reports each deposit written after NetSuite answered: wait until the
        # page's table has read every one
        wait_for_page(
            pipeline,
            f"{ui}/payouts",
            *(rf'data-payout="{po}"[\s\S]*?class="state written"' for po in payouts),
        )
        page.goto(ui + "/payouts")
        for po, payout in payouts.items():
            row = page.locator(f'tr[data-payout="{po}"]')
            shown = f"{to_decimal(payout['amount'], payout['currency']):,f} "
            shown += payout["currency"].upper()
            cells = row.locator(":scope > td.num")  # not the lines' table inside the row
            expect(cells.nth(0)).to_have_text(shown)  # the deposit's total
            expect(cells.nth(1)).to_have_text(shown)  # the payout
            expect(row.locator(":scope > td.match")).to_contain_text("✔")
            expect(row).to_contain_text("payments")
        expect(page.locator("td.match", has_text="✖")).to_have_count(0)
        shot("payouts-balanced")
    except BaseException:
        shot("payouts-failed")
        raise
    finally:
        pipeline.stop()
        stripe.close()
