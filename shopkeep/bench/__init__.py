"""Benchmarks: load generators and their reports, each measured beside a baseline in one run.

``python -m shopkeep.bench.runtime`` measures the actor runtime and its store (asks, tells,
group commit, memory per actor and per timer, timer lateness, restart time).
"""
