"""Shared set-up for the benchmarks: Django on a throw-away database, a real loopback JWKS issuer, fair timing
(interleaved rounds, median of rounds), machine facts, and plots.

The machine is shared and noisy, so absolute times drift from run to run; every script compares cases
measured round by round in one run, with the order of the cases rotated each round, and reports medians.
"""

from __future__ import annotations

import os
import platform
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


def machine_info() -> dict[str, str]:
    """The facts docs/benchmarks.md quotes for every figure: cores, CPU, RAM, versions, load."""
    import importlib.metadata as md

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "django": version("django"),
        "pyjwt": version("pyjwt"),
        "cryptography": version("cryptography"),
        "load": load(),
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def print_machine() -> None:
    info = machine_info()
    print(f"machine: nproc={info['nproc']}, {info['cpu']}, RAM {info['ram']}")
    print(f"versions: Python {info['python']}, Django {info['django']}, PyJWT {info['pyjwt']}, "
          f"cryptography {info['cryptography']}")
    print(f"load average at start (1/5/15 min): {info['load']}")


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
