"""Hypothesis settings for the property suite: a bounded run in ``make test``; the long
run is ``benchmarks/fuzz.py``."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

# A few seconds in all: each property draws this many scenarios per run (the database
# remembers failures between runs, so a found case is tried first next time).
settings.register_profile(
    "nnmem",
    max_examples=25,
    deadline=None,
    # No shrinking here: a failure is reported as drawn; the long run shrinks.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("nnmem")
