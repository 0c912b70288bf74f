"""Benchmarks: each runs its baseline and the gateway in the same process run,
alternating, and reports medians and ratios. Absolute times on a noisy 2-core
machine mean little; ratios measured side by side do."""
