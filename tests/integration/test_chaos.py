"""The chaos suite, reduced: a small history, two rounds that kill every component between them.

``make chaos`` runs the full suite (20 rounds, a bigger history); see
``ledgerstream.testing.chaos`` for what a round does and how it is judged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerstream.testing.chaos import KILLABLE, SMALL, run_suite, summary

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def test_kills_and_faults_change_nothing_in_the_books(tmp_path: Path) -> None:
    """Every component killed at least once, the (single) broker included: while it is down
    the webhook answers 503 (Stripe delivers again), and every component recovers by itself."""
    components = KILLABLE
    base, results = run_suite(
        tmp_path, SMALL, rounds=2, kills_per_round=4, seed=7, killable=components
    )
    print(summary(base, results))
    assert {k for r in results for k in r.kills} == set(components)  # every component killed
    for result in results:
        assert result.ok, (result.name, result.lost, result.different, result.backrefs_missing)
