"""Shared set-up for the benchmarks: Django on a throw-away database, a real loopback JWKS issuer, fair timing
(interleaved rounds, median of rounds), and plots; the machine facts every script prints are in ``_report``.

The machine is shared and noisy, so absolute times drift from run to run; every script compares cases
measured round by round in one run, with the order of the cases rotated each round, and reports medians.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"


def setup_django(database_url: str | None = None, **tokenversion: Any) -> None:
    """Configure Django like a service that installs tokenversion (no provider user lookup) and migrate.

    ``database_url`` defaults to a throw-away SQLite file; a ``postgres://`` URL is read by ``provider.env``.
    """
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))  # a throw-away key per run
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "provider.settings"
    import django
    from django.conf import settings

    settings.TOKENVERSION = {**settings.TOKENVERSION, "USER_LOOKUP": None, **tokenversion}
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


RoundFn = Callable[[], float]


def interleaved_rounds(
    cases: Mapping[str, RoundFn], rounds: int, before_round: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """Run every case once per round, the order rotated each round, so drift and noise hit all cases alike.

    Each case runs a whole round itself and returns its mean seconds per call for that round (so a case
    can prepare state, e.g. an empty cache, outside its timed loop). Returns the per-round samples.
    """
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        if before_round is not None:
            before_round()
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(cases[name]())
    return samples


def timed_loop(fn: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Mean seconds per call of ``fn(item)`` over ``items``."""
    clock = time.perf_counter
    start = clock()
    for item in items:
        fn(item)
    return (clock() - start) / len(items)


def median_ratio(samples: Mapping[str, list[float]], case: str, base: str) -> tuple[float, float, float]:
    """Median, min and max over rounds of ``case / base`` measured in the same round."""
    ratios = [a / b for a, b in zip(samples[case], samples[base], strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a latency that was observed)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def load() -> str:
    """1/5/15 minute load averages, for progress lines (the header and footer come from ``_report``)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_info() -> dict[str, str]:
    """Old shape of the machine facts (cores, CPU, RAM, versions, load), kept for scripts written against it;
    ``_report.machine_facts`` is the full set."""
    from _report import machine_facts

    facts = machine_facts()
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {"nproc": facts["cores"], "cpu": facts["cpu"], "ram": ram, "python": facts["versions"]["python"],
            "django": facts["versions"]["django"], "pyjwt": facts["versions"]["pyjwt"],
            "cryptography": facts["versions"]["cryptography"], "load": facts["load"]}


def print_machine() -> None:
    """Old name of the header; scripts wrap ``main`` in ``_report.run_reported`` instead (header and footer)."""
    from _report import header

    header()


def pyplot():
    """matplotlib's pyplot on the file-only backend (the ``bench`` extra), or None when not installed."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> None:
    """Small PNGs: they are committed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"plot: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
