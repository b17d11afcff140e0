"""Shared set-up for the benchmarks: Django on a throw-away SQLite file, a real loopback JWKS issuer."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(**tokenversion) -> None:
    """Configure Django like a service that installs tokenversion (no provider user lookup)."""
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "provider.settings"
    import django
    from django.conf import settings

    settings.TOKENVERSION = {**settings.TOKENVERSION, "USER_LOOKUP": None, **tokenversion}
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def best_of(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean seconds per call over ``n`` calls."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n)
    return statistics.median(samples)


def interleaved(cases: dict[str, Callable[[], object]], n: int = 2000, rounds: int = 15) -> dict[str, float]:
    """Time the cases round by round, alternating, so machine noise hits them alike."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            results[name].append(best_of(fn, n, 1))
    return {name: statistics.median(values) for name, values in results.items()}


def machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
