"""Fuzz tests: every reader of a foreign or own format, fed mutated valid files.

The hypothesis profile ``quantfid-fuzz`` is derandomized (the same examples on every run,
so CI is reproducible) and keeps no example database; 200 examples per reader. Set
``HYPOTHESIS_PROFILE=quantfid-fuzz-long`` for a longer, randomized local run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture]}
settings.register_profile("quantfid-fuzz", max_examples=200, derandomize=True, **_COMMON)
settings.register_profile("quantfid-fuzz-long", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quantfid-fuzz"))
