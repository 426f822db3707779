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


def test_a_three_broker_cluster_loses_one_broker_at_a_time_without_an_outage(
    tmp_path: Path,
) -> None:
    """Replication factor 3, min.insync.replicas=2: one broker killed (-9) and restarted, three
    times, each once the cluster is whole again (as in a rolling restart), while webhooks
    arrive: every webhook is stored at its first attempt (no 503 with the default publish
    timeout), and the books are those of the undisturbed run."""
    base, results = run_suite(
        tmp_path, SMALL, rounds=1, kills_per_round=3, seed=3, brokers=3, killable=("broker",)
    )
    print(summary(base, results))
    [result] = results
    assert result.kills == ["broker"] * 3
    assert result.ok, (result.lost, result.different, result.backrefs_missing)
    assert set(result.webhooks) == {200}, result.webhooks  # never a 503: no outage
