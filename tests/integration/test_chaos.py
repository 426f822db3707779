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
    """Every component but the broker killed once. Broker kills (one broker, or one of three)
    are in ``make chaos`` only for now: after a broker dies a processor worker can stall
    (docs/reliability.md, "open"), and a test known to fail must not gate every change."""
    components = tuple(k for k in KILLABLE if k != "broker")
    base, results = run_suite(
        tmp_path, SMALL, rounds=2, kills_per_round=3, seed=7, killable=components
    )
    print(summary(base, results))
    assert {k for r in results for k in r.kills} == set(components)  # every component killed
    for result in results:
        assert result.ok, (result.name, result.lost, result.different, result.backrefs_missing)
