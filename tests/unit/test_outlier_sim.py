"""The outlier simulation (bench/outlier_sim.py): pure and seeded, so its
figures are facts a test can hold, in a fraction of a second."""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

from bench.outlier_sim import ALIKE, TEN_X, main, percentile, simulate


def test_without_ejection_the_slow_primary_keeps_every_request() -> None:
    run = simulate(TEN_X, eject=False)
    assert run.slow_share == 1.0 and run.ejections == 0 and run.p99_ms > 500


def test_with_ejection_it_serves_a_small_share_and_the_p99_falls() -> None:
    before, after = simulate(TEN_X, eject=False), simulate(TEN_X, eject=True)
    assert after.first_ejection_after_s is not None and after.first_ejection_after_s <= 45
    assert after.slow_share < 0.15 and after.slow_share_after_first < 0.05
    assert after.p50_ms < 60 and after.p99_ms < before.p99_ms
    assert after.longest_ejection_s > 30     # ejected again, for longer


def test_over_a_longer_run_the_share_keeps_falling() -> None:
    short, long = (simulate(TEN_X, eject=True, probation=False),
                   simulate(dataclasses.replace(TEN_X, duration_s=1800), eject=True, probation=False))
    assert long.slow_share_after_first < short.slow_share_after_first
    assert long.longest_ejection_s == 300    # max_ejection_time_s


def test_with_probation_a_returned_provider_serves_nothing_while_still_slow() -> None:
    without, with_ = simulate(TEN_X, eject=True, probation=False), simulate(TEN_X, eject=True)
    assert with_.first_ejection_after_s == without.first_ejection_after_s
    assert without.slow_share_after_first > 0.01 and with_.slow_share_after_first == 0.0
    assert with_.p99_after_first_ms < 100 < without.p99_after_first_ms
    assert with_.ejections == without.ejections     # re-ejected by its probes, each time for longer
    assert simulate(ALIKE, eject=True) == dataclasses.replace(simulate(ALIKE, eject=True, probation=False),
                                                              probation=True)


def test_providers_alike_are_never_ejected_and_ejection_changes_nothing() -> None:
    off, on = simulate(ALIKE, eject=False), simulate(ALIKE, eject=True)
    assert on.ejections == 0 and on.served == off.served and on.p99_ms == off.p99_ms


def test_the_same_seed_gives_the_same_run() -> None:
    assert simulate(TEN_X, eject=True, seed=3) == simulate(TEN_X, eject=True, seed=3)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([1.0, 2.0], 100) == 2.0
    assert percentile([], 50) != percentile([], 50)   # nan


def test_main_writes_the_table_and_the_figures(tmp_path: Path) -> None:
    table = main(results=tmp_path)
    text = table.read_text()
    assert "| primary turns 10x slower | off | 5400 | 100.0% |" in text and text.count("\n| ") == 11
    assert "| primary turns 10x slower | on, no probation | 5400 |" in text
    runs = json.loads((tmp_path / "outlier_sim.json").read_text())
    assert [(r["scenario"], r["eject"]) for r in runs][:2] == [("primary turns 10x slower", False),
                                                              ("primary turns 10x slower", True)]
