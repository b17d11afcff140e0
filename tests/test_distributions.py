"""The two distributions built from this repository, as pip builds them.

The wheel a service installs (the root ``pyproject.toml``) holds the service side, ``tokenversion``, and
nothing else: not the provider's app, its settings, its user database, the sample service or the demo, and no
file in it carries a development secret. The provider's wheel (``server/pyproject.toml``) holds the provider's
packages only. Runs once, in the PostgreSQL pass (marker ``quickstart``): it builds wheels.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.remote_helpers import ROOT

pytestmark = pytest.mark.quickstart

VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    """``python -m build``: the sdist, then the wheel built from that sdist (so the sdist is complete)."""
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], check=True,
                   capture_output=True, timeout=300)
    (sdist,) = out.glob("*.tar.gz")
    assert sdist.name.endswith(f"-{VERSION}.tar.gz")
    (wheel,) = out.glob("*.whl")
    assert f"-{VERSION}-" in wheel.name
    return zipfile.ZipFile(wheel)


def top_level(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/", 1)[0] for name in wheel.namelist() if ".dist-info/" not in name}


def development_secrets() -> set[str]:
    """Every secret-looking literal of the provider's settings and the test and demo configurations."""
    found = set()
    for path in [ROOT / "server" / "provider" / "settings.py", ROOT / "tests" / "settings.py",
                 ROOT / "tests" / "feed_settings.py", ROOT / "sample_service" / "stack.py"]:
        found |= set(re.findall(r'"((?:[a-z0-9]+-)*secret[a-z0-9-]*|django-insecure[a-z0-9-]*)"', path.read_text()))
    return {s for s in found if len(s) >= 16}


def test_the_service_wheel_holds_only_the_service_side(tmp_path):
    wheel = build_wheel(ROOT, tmp_path / "service")
    assert top_level(wheel) == {"tokenversion"}
    names = wheel.namelist()
    assert not [n for n in names if "/server/" in n or "migrations" in n or n.endswith(".html")]
    secrets = development_secrets()
    assert secrets, "the scan found no development secret to look for"
    for name in names:
        data = wheel.read(name).decode("utf-8", "replace")
        leaked = [s for s in secrets if s in data]
        assert not leaked, f"{name} contains development secrets {leaked}"


def test_the_provider_wheel_holds_only_the_providers_packages(tmp_path):
    wheel = build_wheel(ROOT / "server", tmp_path / "provider")
    assert top_level(wheel) == {"tokenversion_server", "accounts", "provider"}
    names = set(wheel.namelist())
    assert "tokenversion_server/migrations/0001_initial.py" in names
    assert any(n.startswith("tokenversion_server/templates/admin/") for n in names)
    assert "accounts/migrations/0001_initial.py" in names


def test_one_version_for_the_service_the_provider_and_the_keycloak_jar():
    """The two wheels and the Keycloak extension's JAR are released together, under one version."""
    import tokenversion

    provider = re.search(r'^version = "([^"]+)"', (ROOT / "server" / "pyproject.toml").read_text(), re.M).group(1)
    pin = re.search(r'"django-tokenversion\[[a-z,]+\]==([^"]+)"', (ROOT / "server" / "pyproject.toml").read_text())
    pom = re.search(r"<artifactId>tokenversion-keycloak</artifactId>\s*<version>([^<]+)</version>",
                    (ROOT / "keycloak" / "pom.xml").read_text())
    assert {VERSION, tokenversion.__version__, provider, pin.group(1), pom.group(1)} == {VERSION}
    assert f"## {VERSION}" in (ROOT / "CHANGELOG.md").read_text()
