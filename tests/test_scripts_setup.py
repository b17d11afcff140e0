"""scripts/lib.sh installs a JDK 17 and Maven from Debian's packages when missing (issue 11 item 5).

apt-get itself is replaced by a recorder on PATH: installing packages for real would change the shared
machine, and what matters here is which packages the script asks Debian for, and when.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("bash", "sed", "basename", "id", "cat", "dirname")


def _fakebin(tmp_path: Path, java_version: str | None, javac: bool, mvn: bool) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/bash\necho "$*" >> {log}\n')
    if java_version:
        (bin_dir / "java").write_text(
            f"#!/bin/bash\necho '    java.specification.version = {java_version}' >&2\n")
    if javac:
        (bin_dir / "javac").write_text("#!/bin/bash\n")
    if mvn:
        (bin_dir / "mvn").write_text("#!/bin/bash\n")
    for path in bin_dir.iterdir():
        if not path.is_symlink():
            path.chmod(0o755)
    return bin_dir


def _ensure(tmp_path: Path, **tools) -> list[str]:
    bin_dir = _fakebin(tmp_path, **tools)
    subprocess.run(["bash", "-c", f"source {ROOT}/scripts/lib.sh && ensure_java_maven"], check=True,
                   env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, capture_output=True, timeout=30)
    log = tmp_path / "apt.log"
    return [line for line in log.read_text().splitlines() if line.startswith("install")] if log.exists() else []


@pytest.mark.skipif(os.geteuid() != 0, reason="apt_install installs only as root (it prints the sudo line otherwise)")
@pytest.mark.parametrize(("tools", "expected"), [
    ({"java_version": None, "javac": False, "mvn": False}, ["openjdk-17-jdk-headless", "maven"]),
    ({"java_version": "11", "javac": True, "mvn": True}, ["openjdk-17-jdk-headless"]),
    ({"java_version": "17", "javac": False, "mvn": True}, ["openjdk-17-jdk-headless"]),  # a JRE only
    ({"java_version": "21", "javac": True, "mvn": False}, ["maven"]),
    ({"java_version": "17", "javac": True, "mvn": True}, []),
])
def test_missing_jdk_or_maven_is_installed_from_debian(tmp_path, tools, expected):
    installs = _ensure(tmp_path, **tools)
    assert [line.split()[-1] for line in installs] == expected


def test_test_script_installs_instead_of_stopping():
    script = (ROOT / "scripts/test.sh").read_text()
    assert "ensure_java_maven" in script.split("mvn -B package")[0]
