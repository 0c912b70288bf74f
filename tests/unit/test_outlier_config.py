"""The outlier config: defaults that are the policy's, and errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actors.policy.outliers.config import OutlierConfig
from actors.policy.outliers.detection import OutlierPolicy


def test_the_defaults_are_the_policy_defaults() -> None:
    assert OutlierConfig().to_policy() == OutlierPolicy()


def test_every_setting_reaches_the_policy() -> None:
    cfg = OutlierConfig.model_validate({
        "enabled": False, "interval_s": 5, "window_s": 30, "probe_window_s": 600, "base_ejection_time_s": 10,
        "max_ejection_time_s": 100, "max_ejection_percent": 34, "always_eject_one": False, "panic_threshold_percent": 20,
        "success_rate": {"enabled": False, "minimum_hosts": 6, "request_volume": 50, "stdev_factor": 2.5},
        "failure_percentage": {"enabled": False, "threshold_percent": 70, "minimum_hosts": 3, "request_volume": 10},
        "slow_calls": {"enabled": False, "factor": 4, "min_ms": 5, "rate_threshold": 0.8, "request_volume": 10,
                       "peer_volume": 2, "probe_volume": 2, "probe_recent": 4},
    })
    assert cfg.to_policy() == OutlierPolicy(
        enabled=False, interval_s=5, window_s=30, probe_window_s=600, base_ejection_time_s=10, max_ejection_time_s=100,
        max_ejection_percent=34, always_eject_one=False, panic_threshold_percent=20,
        sr_enabled=False, sr_minimum_hosts=6, sr_request_volume=50, sr_stdev_factor=2.5,
        fp_enabled=False, fp_threshold_percent=70, fp_minimum_hosts=3, fp_request_volume=10,
        slow_enabled=False, slow_factor=4, slow_min_ms=5, slow_rate_threshold=0.8, slow_request_volume=10,
        slow_peer_volume=2, probe_volume=2, probe_recent=4)


@pytest.mark.parametrize("raw, where", [
    ({"max_ejection_time_s": 10}, "max_ejection_time_s"),
    ({"slow_calls": {"probe_volume": 6}}, "probe_recent"),
    ({"slow_calls": {"factor": 1}}, "factor"),
    ({"max_ejection_percent": 101}, "max_ejection_percent"),
    ({"failure_percentage": {"threshold": 50}}, "threshold"),     # unknown field: a typo is refused
])
def test_invalid_settings_are_refused(raw: dict, where: str) -> None:
    with pytest.raises(ValidationError) as info:
        OutlierConfig.model_validate(raw)
    assert where in str(info.value)
