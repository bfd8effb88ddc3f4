"""Shared pytest configuration: deterministic hypothesis runs in CI."""

from __future__ import annotations

import os

from hypothesis import settings

# CI (CI=true) explores the same examples on every run, so a red build is reproducible;
# developers keep hypothesis's default random exploration.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
