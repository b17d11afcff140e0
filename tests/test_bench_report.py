"""The header and footer of every benchmark (bench/_report.py): the machine facts a figure is quoted with."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _report  # noqa: E402

AMD_GUEST = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse2 hypervisor avx2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
"""


def test_cpu_model_vendor_and_guest_come_from_cpuinfo():
    assert _report.cpu_facts(AMD_GUEST) == {"model": "AMD EPYC", "vendor": "AuthenticAMD",
                                            "virtual": "virtual machine"}
    bare = "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu sse2\n"
    assert _report.cpu_facts(bare)["virtual"] == "no hypervisor flag"


def test_a_benchmark_prints_header_and_footer_even_when_it_fails(capsys):
    with pytest.raises(RuntimeError):
        _report.run_reported(lambda: (_ for _ in ()).throw(RuntimeError("boom")), packages=["no-such-dist"])
    out = capsys.readouterr().out
    assert out.count("cpu: ") == 2 and out.count("versions: Python ") == 2
    assert "PyJWT " in out and "cryptography " in out and "Django " in out
    assert "no-such-dist not installed" in out
    assert "load average before (1/5/15 min): " in out
    assert "load average (1/5/15 min): before " in out and ", after " in out


def test_every_benchmark_script_is_wrapped():
    scripts = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    assert "auth_overhead.py" in scripts
    unwrapped = [name for name in scripts if "run_reported(main" not in (BENCH / name).read_text()]
    assert unwrapped == [], f"bench scripts without the _report header and footer: {unwrapped}"


def test_help_does_not_print_a_header():
    out = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "usage:" in out and "cpu: " not in out
