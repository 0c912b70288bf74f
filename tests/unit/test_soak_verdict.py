"""The soak's verdict (tests/faults/soak.py) on made-up samples."""

from __future__ import annotations

from typing import Any

from tests.faults.soak import verdict


def samples(n: int = 30, p99: float = 50.0, rss: float = 1000.0, failed: int = 0, **at: Any) -> list[dict[str, Any]]:
    out = [{"t_s": 10.0 * (i + 1), "p99_ms": p99, "rss_total_mb": rss, "answered": 2000, "failed": failed}
           for i in range(n)]
    for i, changes in at.items():
        out[int(i.lstrip("_"))].update(changes)
    return out


def test_steady_samples_pass() -> None:
    v = verdict(samples(), warmup_s=60)
    assert v["ok"] and v["rss_ok"] and v["p99_ok"] and v["served_ok"]


def test_one_spike_past_four_times_the_median_fails_steadiness() -> None:
    v = verdict(samples(_20={"p99_ms": 201.0}), warmup_s=60)
    assert not v["ok"] and not v["p99_ok"] and v["rss_ok"]


def test_refusals_past_a_thousandth_of_the_requests_fail_it() -> None:
    # An overloaded router's refusals are answered fast: they would flatter the p99.
    assert verdict(samples(failed=2), warmup_s=60)["served_ok"]          # 0.1%
    v = verdict(samples(failed=3), warmup_s=60)
    assert not v["ok"] and not v["served_ok"] and v["p99_ok"]


def test_a_probe_holds_when_nearly_all_is_answered_in_time() -> None:
    from tests.faults.soak import holds

    answers = [(float(i), 20.0, True) for i in range(2970)]            # 99% of 100/s for 30 s
    assert holds(answers, 100.0, 30.0)[0]
    assert not holds(answers[:2800], 100.0, 30.0)[0]                    # a backlog: 93% answered
    slow = answers[:2900] + [(0.0, 900.0, True)] * 70                  # p99 past 250 ms
    assert not holds(slow, 100.0, 30.0)[0]
    failing = answers[:2960] + [(0.0, 20.0, False)] * 10
    ok, probe = holds(failing, 100.0, 30.0)
    assert not ok and probe["failed"] == 10


def test_the_cpu_ceiling_is_the_pace_that_fills_every_core_at_the_median_cpu_per_request() -> None:
    from tests.faults.soak import cpu_ceiling

    steady = [{"t_s": 10.0 * (i + 1), "cpu_ms_per_request": {"router": 4.0, "provider": 3.0, "driver": 1.0 + (i == 9)}}
              for i in range(10)]
    warm = {"t_s": 5.0, "cpu_ms_per_request": {"router": 40.0}}        # warm-up: not counted
    c = cpu_ceiling([warm, *steady], warmup_s=5.0, rate_per_s=125.0, cores=2)
    assert c == {"cpu_ms_per_request": 8.0, "ceiling_per_s": 250.0, "share_of_ceiling": 0.5}
    assert cpu_ceiling([{"t_s": 20.0, "p99_ms": 1.0}], warmup_s=5.0, rate_per_s=1.0, cores=2) == {}
