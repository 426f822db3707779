"""The pure helpers of benchmarks.scale_bench (checkpoints, windows, the scenario size)."""

from __future__ import annotations

import os

import pytest

from benchmarks.scale_bench import kth_time, parse_checkpoints, peaks, reached_at, rss, scenario_for


def test_scenario_for_scales_customers_with_events() -> None:
    assert scenario_for(100_000).customers == 2_394
    assert scenario_for(100_000).months == 6
    assert scenario_for(5_000).customers == 120
    assert scenario_for(1).customers == 1


def test_parse_checkpoints_sorts_and_clips_to_the_total() -> None:
    assert parse_checkpoints("50000,10000,100000", 100_257) == [10_000, 50_000, 100_000]
    assert parse_checkpoints("10000, 50000,100000", 60_000) == [10_000, 50_000, 60_000]
    assert parse_checkpoints("100,100", 50) == [50]
    with pytest.raises(ValueError):
        parse_checkpoints("0,10", 50)


def test_reached_at_is_the_latest_of_the_first_k_or_none() -> None:
    assert reached_at([3.0, 1.0, 2.0, None], 3) == 3.0
    assert reached_at([3.0, None, 2.0], 3) is None
    assert reached_at([], 1) is None


def test_kth_time_sorts_the_moments() -> None:
    assert kth_time([5.0, 1.0, 3.0], 2) == 3.0
    assert kth_time([5.0], 2) is None
    assert kth_time([5.0], 0) is None


def test_peaks_over_the_window_only() -> None:
    samples = [(1.0, {"a": 10, "b": 5}), (2.0, {"a": 30, "b": 1}), (3.0, {"a": 99, "b": 99})]
    assert peaks(samples, 2.0) == {"a": 30, "b": 5}
    assert peaks(samples, 0.5) == {}


def test_rss_of_this_process_and_of_a_gone_one() -> None:
    assert rss(os.getpid(), children=False) > 0
    assert rss(2**22 + 12_345) == 0
