"""The header and footer every benchmark prints: which machine, which versions, how loaded.

A figure is only comparable with another taken on the same CPU under a similar load, so every script
prints, at its start and again at its end, the CPU model, the core count, the versions of Python, Django,
DRF, PyJWT and cryptography (and of any peer library it measures), the commit of the code measured, and the
load average before and after. The footer repeats the machine lines so a log cut to its last screen still
says where its figures came from.

Use it by wrapping the script's ``main``::

    from _report import run_reported

    if __name__ == "__main__":
        sys.exit(run_reported(main, packages=("djangorestframework-simplejwt",)))

or, where a script needs the facts itself (a plot title), ``machine_facts()`` and ``header()``/``footer()``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Always reported: the stack every figure depends on (the DRF class, PyJWT's decode, OpenSSL via cryptography).
CORE_PACKAGES = ("django", "djangorestframework", "pyjwt", "cryptography")


def cpu_facts(cpuinfo: str | None = None) -> dict[str, str]:
    """CPU model, vendor and whether it is a virtual machine, from ``/proc/cpuinfo`` (Linux).

    A KVM guest may expose only a family name ("AMD EPYC", "Intel(R) Xeon(R) Processor"): that is what is
    printed, since it is all the guest can know.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:  # the first processor's entry describes them all here
            fields[key] = value.strip()
    flags = fields.get("flags", "").split()
    return {
        "model": fields.get("model name") or platform.processor() or "unknown",
        "vendor": fields.get("vendor_id", "unknown"),
        "virtual": "virtual machine" if "hypervisor" in flags else "no hypervisor flag",
    }


def core_count() -> str:
    """Logical CPUs this process may run on (``nproc``), and the machine's total when it differs."""
    total = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = total
    return f"{usable}" if usable == total else f"{usable} (of {total})"


def load_average() -> str:
    """1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def versions(packages: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of Python, the core stack and ``packages`` (distribution names)."""
    found = {"python": platform.python_version()}
    for name in (*CORE_PACKAGES, *packages):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def code_version() -> str:
    """The commit measured, and whether the tree had uncommitted changes (figures from a dirty tree are
    not reproducible from the commit alone)."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def machine_facts(packages: Iterable[str] = ()) -> dict[str, Any]:
    """Everything the header prints, as data (for plot titles and tables)."""
    cpu = cpu_facts()
    return {
        "cpu": cpu["model"],
        "vendor": cpu["vendor"],
        "virtual": cpu["virtual"],
        "cores": core_count(),
        "versions": versions(packages),
        "code": code_version(),
        "load": load_average(),
    }


def cpu_label() -> str:
    """Short label for plots: ``AMD EPYC, 2 cores``."""
    return f"{cpu_facts()['model']}, {core_count()} cores"


def _machine_lines(facts: dict[str, Any]) -> list[str]:
    names = {"python": "Python", "django": "Django", "djangorestframework": "DRF", "pyjwt": "PyJWT"}
    listed = ", ".join(f"{names.get(name, name)} {version}" for name, version in facts["versions"].items())
    return [
        f"cpu: {facts['cpu']} ({facts['vendor']}, {facts['virtual']}); cores (nproc): {facts['cores']}",
        f"versions: {listed}",
        f"code: {facts['code']}; {platform.system()} {platform.release()}",
    ]


@dataclass
class Report:
    """One script's run: the facts at its start, kept to print with the load at its end."""

    script: str
    packages: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0

    def header(self) -> None:
        self.facts = machine_facts(self.packages)
        self.started = time.monotonic()
        print(f"== {self.script}: start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        for line in _machine_lines(self.facts):
            print(line)
        print(f"load average before (1/5/15 min): {self.facts['load']}", flush=True)

    def footer(self) -> None:
        elapsed = time.monotonic() - self.started
        print(f"== {self.script}: end {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {elapsed:.0f} s")
        for line in _machine_lines(self.facts):
            print(line)
        print(f"load average (1/5/15 min): before {self.facts['load']}, after {load_average()}", flush=True)


def header(script: str | None = None, packages: Iterable[str] = ()) -> Report:
    """Print the header now; call ``.footer()`` on the result when the measurements are done."""
    report = Report(script or _script_name(), tuple(packages))
    report.header()
    return report


def run_reported(main: Callable[[], Any], packages: Iterable[str] = ()) -> Any:
    """Run ``main()`` between the header and the footer (the footer also when ``main`` fails or is
    interrupted, so a partial log still has both loads). Returns what ``main`` returns."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        return main()  # a usage message measures nothing
    report = header(packages=packages)
    try:
        return main()
    finally:
        report.footer()


def _script_name() -> str:
    path = Path(sys.argv[0]).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
