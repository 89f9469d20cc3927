"""Hypothesis profile for CI. Local runs draw fresh examples each time, to keep finding new cases;
CI (`.ci/run` sets HYPOTHESIS_PROFILE=ci) draws the same examples on every run, so a suite that was
green on a clean clone here is green there, and a failure reproduces from the log alone."""
import os
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
