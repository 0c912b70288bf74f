"""What a Python user might use instead of the gateway, in-process: the
seed's sequential ProviderChain, and tenacity + pybreaker around a provider
list. Both call the same simulated providers (`SimulatedAdapter`) the
gateway's provider actors run, with the same settings, so failure rates and
latencies are the same; they pay no Ray hops."""

from bench.baselines.base import (
    InProcessProvider,
    Trace,
    TraceAttempt,
    simulated_providers,
)

__all__ = ["InProcessProvider", "Trace", "TraceAttempt", "simulated_providers"]
