"""tenacity + pybreaker around a provider list: what a Python user might
write instead of the gateway.

One `pybreaker.CircuitBreaker` per provider (`fail_max` consecutive
failures open it for `reset_timeout` seconds, then one half-open trial), and
tenacity retrying over the list in its configured order: attempt n goes to
provider n. An open breaker refuses at once (`CircuitBreakerError`), which
costs tenacity an attempt but no provider call; attempts counted in the
trace are provider calls, as the gateway counts them.
"""

from __future__ import annotations

import time
from typing import Any

import pybreaker
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_none,
)

from actors.errors import ProviderError
from bench.baselines.base import InProcessProvider, Trace, TraceAttempt


class BreakerChain:
    def __init__(self, providers: list[InProcessProvider], fail_max: int = 3, reset_timeout_s: float = 30.0,
                 max_attempts: int | None = None):
        self.providers = providers
        self.breakers = {p.name: pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout_s, name=p.name)
                         for p in providers}
        self.max_attempts = max_attempts or len(providers)

    async def invoke_traced(self, method: str, payload: Any) -> Trace:
        trace = Trace(ok=False)
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=wait_none(),
                                               retry=retry_if_exception_type((ProviderError, pybreaker.CircuitBreakerError)),
                                               reraise=True):
                with attempt:
                    provider = self.providers[(attempt.retry_state.attempt_number - 1) % len(self.providers)]
                    with self.breakers[provider.name].calling():
                        started = time.perf_counter()
                        try:
                            value = await provider.call(method, payload)
                        except ProviderError:
                            trace.attempts.append(TraceAttempt(provider.name, False, (time.perf_counter() - started) * 1000))
                            raise
                        trace.attempts.append(TraceAttempt(provider.name, True, (time.perf_counter() - started) * 1000))
                    trace.ok, trace.value, trace.provider = True, value, provider.name
        except (ProviderError, pybreaker.CircuitBreakerError) as exc:
            trace.ok, trace.error = False, f"{type(exc).__name__}: {exc}"
        return trace
