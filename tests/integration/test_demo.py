"""The README's main command: ``ledgerstream demo`` (what ``make demo`` runs) on the local stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerstream.demo_month import MONTH, cases
from ledgerstream.testing.generator import generate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def test_the_demo_month_reconciles_every_payout_and_writes_the_report() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    payouts = cases(generate(MONTH))["payouts"]
    assert f"{payouts} of {payouts} payouts balanced to the minor unit" in out.stdout
    assert out.stdout.count("  ✔ po_") == payouts and "✖" not in out.stdout
    assert "dead letters: 0" in out.stdout
    # the progress bars (tqdm, on stderr) reached their totals
    for bar in ("webhooks", "NetSuite records", "back-references"):
        assert re.search(rf"{bar}: 100%\|", out.stderr), bar
    report = Path(re.search(r"^report: (.+)$", out.stdout, re.M).group(1))  # type: ignore[union-attr]
    page = report.read_text()
    assert page.count("<svg") == 2  # a composition chart per payout currency (USD, EUR)
    assert page.count("class=ok>✔") == payouts
    assert "deleted the run's" in out.stdout  # its topics are gone again
