"""The config of outlier ejection (`policy.outlier`), as pydantic models at
the edge; `to_policy()` gives the frozen `OutlierPolicy` the pure code reads.

Outliers are found among a capability's providers, so the setting is read
per capability (the top-level `policy` merged with the capability's); a
provider's own `policy.outlier` would have no peers to be compared with.
The defaults eject a provider ten times slower than its peers and never one
as slow as they are; see actors/policy/outliers/detection.py for Envoy's semantics.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.policy.outliers.detection import OutlierPolicy

__all__ = ["FailurePercentageConfig", "OutlierConfig", "SlowCallConfig", "SuccessRateConfig"]

_D = OutlierPolicy()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuccessRateConfig(_Model):
    enabled: bool = Field(_D.sr_enabled, description=(
        "eject a provider whose success rate is below mean - stdev_factor x stdev of its peers'"))
    minimum_hosts: int = Field(_D.sr_minimum_hosts, ge=1, description=(
        "providers with request_volume calls needed to judge any (below 5, a factor of 1.9 can eject nobody)"))
    request_volume: int = Field(_D.sr_request_volume, ge=1, description="calls within outlier.window_s a provider needs to count")
    stdev_factor: float = Field(_D.sr_stdev_factor, gt=0, description="Envoy's success_rate_stdev_factor / 1000")


class FailurePercentageConfig(_Model):
    enabled: bool = Field(_D.fp_enabled, description="eject a provider failing at least threshold_percent of its calls")
    threshold_percent: float = Field(_D.fp_threshold_percent, gt=0, le=100, description="failed calls, in percent")
    minimum_hosts: int = Field(_D.fp_minimum_hosts, ge=1, description="providers with request_volume calls needed to judge any")
    request_volume: int = Field(_D.fp_request_volume, ge=1, description="calls within outlier.window_s a provider needs to count")


class SlowCallConfig(_Model):
    enabled: bool = Field(_D.slow_enabled, description="eject a provider whose calls are mostly far slower than its peers'")
    factor: float = Field(_D.slow_factor, gt=1, description="a call is slow at this many times the peers' median latency")
    min_ms: float = Field(_D.slow_min_ms, ge=0, description="no call quicker than this is slow, whatever the ratio")
    rate_threshold: float = Field(_D.slow_rate_threshold, gt=0, le=1, description="share of slow calls that makes an outlier")
    request_volume: int = Field(_D.slow_request_volume, ge=1, description="live calls a provider needs to be judged")
    peer_volume: int = Field(_D.slow_peer_volume, ge=1, description="live calls a peer needs to count in the baseline")
    probe_volume: int = Field(_D.probe_volume, ge=1, description=(
        "probes within outlier.probe_window_s needed, of a provider and of a peer, to compare them by probes "
        "when they have too few live calls"))
    probe_recent: int = Field(_D.probe_recent, ge=1, description="only this many of a provider's latest probes count")

    @model_validator(mode="after")
    def _recent_holds_volume(self) -> SlowCallConfig:
        if self.probe_recent < self.probe_volume:
            raise ValueError("slow_calls.probe_recent must be at least probe_volume")
        return self


class OutlierConfig(_Model):
    enabled: bool = Field(_D.enabled, description="take providers performing unlike their peers out of rotation for a while")
    interval_s: float = Field(_D.interval_s, gt=0, description="time between ejection sweeps")
    window_s: float = Field(_D.window_s, gt=0, description="live calls older than this do not count")
    probe_window_s: float = Field(_D.probe_window_s, gt=0, description="probes older than this do not count")
    base_ejection_time_s: float = Field(_D.base_ejection_time_s, gt=0, description=(
        "an ejection lasts this long times the ejections in a row (the count decays while the provider does well)"))
    max_ejection_time_s: float = Field(_D.max_ejection_time_s, gt=0, description="the longest an ejection lasts")
    max_ejection_percent: float = Field(_D.max_ejection_percent, ge=0, le=100, description=(
        "the most providers of a capability ejected at once, in percent (the last one in rotation never is)"))
    always_eject_one: bool = Field(_D.always_eject_one, description="allow one ejection even when the percent floors to none")
    panic_threshold_percent: float = Field(_D.panic_threshold_percent, ge=0, le=100, description=(
        "when fewer providers than this share are in rotation (ejected or unhealthy), ejections are disregarded"))
    probation: bool = Field(_D.probation, description=(
        "a provider whose ejection is over stays tried after the rest until a sweep with enough calls or probes "
        "to judge it finds it no outlier (else it is ejected again); off: it is fully back at once, as in Envoy. "
        "Inspired by Envoy's slow_start_config, gated on evidence rather than on a time window"))
    success_rate: SuccessRateConfig = SuccessRateConfig()
    failure_percentage: FailurePercentageConfig = FailurePercentageConfig()
    slow_calls: SlowCallConfig = SlowCallConfig()

    @model_validator(mode="after")
    def _max_after_base(self) -> OutlierConfig:
        if self.max_ejection_time_s < self.base_ejection_time_s:
            raise ValueError("outlier.max_ejection_time_s must be at least base_ejection_time_s")
        return self

    def to_policy(self) -> OutlierPolicy:
        sr, fp, slow = self.success_rate, self.failure_percentage, self.slow_calls
        return OutlierPolicy(
            enabled=self.enabled, interval_s=self.interval_s, window_s=self.window_s, probe_window_s=self.probe_window_s,
            base_ejection_time_s=self.base_ejection_time_s, max_ejection_time_s=self.max_ejection_time_s,
            max_ejection_percent=self.max_ejection_percent, always_eject_one=self.always_eject_one,
            panic_threshold_percent=self.panic_threshold_percent, probation=self.probation,
            sr_enabled=sr.enabled, sr_minimum_hosts=sr.minimum_hosts, sr_request_volume=sr.request_volume,
            sr_stdev_factor=sr.stdev_factor,
            fp_enabled=fp.enabled, fp_threshold_percent=fp.threshold_percent, fp_minimum_hosts=fp.minimum_hosts,
            fp_request_volume=fp.request_volume,
            slow_enabled=slow.enabled, slow_factor=slow.factor, slow_min_ms=slow.min_ms,
            slow_rate_threshold=slow.rate_threshold, slow_request_volume=slow.request_volume,
            slow_peer_volume=slow.peer_volume, probe_volume=slow.probe_volume, probe_recent=slow.probe_recent,
        )
