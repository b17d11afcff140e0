"""The service side against every Django line it supports, each in a fresh virtualenv (``nox``).

Django 5.2 LTS runs on the machine's Python 3.11, with the lowest versions of DRF, PyJWT and cryptography that
``pyproject.toml`` declares; Django 6.0 and 6.1 need Python 3.12, which this machine has (pyenv), with the
newest. A missing interpreter fails the run (``--error-on-missing-interpreters``) instead of passing it
silently. ``scripts/test.sh`` runs every session; ``nox -s "service(django-6.1)"`` runs one.

Each session installs both distributions from this checkout (the provider's pin allows the same Django lines)
and runs the tests of the front doors, the validation and revocation rules, the checks and the remote stores
on SQLite. The full suite, end to end, runs on Django 5.2 in the main passes of ``scripts/test.sh``.
"""

from __future__ import annotations

import glob
import os
import shutil

import nox

nox.options.sessions = ["service"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

SERVICE_TESTS = [
    "tests/test_front_doors.py",
    "tests/test_metrics.py",  # the verifier's observer through every front door (the metrics extra)
    "tests/test_authentication.py",
    "tests/test_attack_corpus.py",
    "tests/test_checks.py",
    "tests/test_remote_checks.py",
    "tests/test_revocation_map.py",
    "tests/test_remote_stores.py",
]


def interpreter(version: str) -> str:
    """``python3.12`` from PATH, else the newest pyenv build of it (pyenv's shim on PATH answers only for the
    selected version); the version string itself when neither exists, so nox reports it missing."""
    found = shutil.which(f"python{version}")
    if found and "/shims/" not in found:
        return found
    builds = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    return builds[-1] if builds else version


# The lowest versions the service distribution declares (pyproject.toml), tested together on Django 5.2.
LOWEST = ["djangorestframework==3.16.0", "pyjwt==2.15.1", "cryptography==42.0.0"]


@nox.session
@nox.parametrize("python,django,pins", [(interpreter("3.11"), "5.2", LOWEST), (interpreter("3.12"), "6.0", []),
                                        (interpreter("3.12"), "6.1", [])],
                 ids=["django-5.2-lowest", "django-6.0", "django-6.1"])
def service(session: nox.Session, django: str, pins: list[str]) -> None:
    session.install("-e", ".[redis,drf,ninja,fastapi,metrics]", "-e", "./server", "pytest>=8", "pytest-django>=4.9",
                    "hypothesis>=6.100", "requests>=2.32", "httpx>=0.27", f"django~={django}.0", *pins)
    session.run("python", "-c", "import cryptography, django, jwt, rest_framework; print('Django', "
                "django.get_version(), '| DRF', rest_framework.VERSION, '| PyJWT', jwt.__version__, "
                "'| cryptography', cryptography.__version__)")
    var = os.path.join(session.create_tmp(), "var")
    os.makedirs(var, exist_ok=True)
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-m", "not keycloak and not postgres and not quickstart",
                *SERVICE_TESTS, *session.posargs,
                env={"TOKENVERSION_TEST_DB": "sqlite", "TOKENVERSION_TEST_SQLITE": os.path.join(var, "test.sqlite3")})
