"""Test configuration.

Hypothesis profiles: ``default`` is derandomised (the same examples on every
run, so CI is reproducible) with a modest example count; select ``explore``
(``HYPOTHESIS_PROFILE=explore``) for fresh random examples and more of them.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
