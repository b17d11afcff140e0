#!/usr/bin/env python3
"""Django's command-line utility for the tokenversion provider.

Run from the repository as ``python3 manage.py <command>``, venv activated or not: when Django is not
importable by the running interpreter, it re-executes itself with the project's ``.venv`` (the one
``scripts/provider.sh`` installs). With nothing configured, it reads ``var/dev.env`` (``provider/devenv.py``).
A command that cannot run says why in one line (``error: ...``), never with a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _reexec_in_venv() -> None:
    """Use the project's virtualenv when this interpreter has no Django (e.g. the system's python3)."""
    try:
        import django  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
            os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606
        _fail("Django is not installed for this Python: run `bash scripts/provider.sh` first "
              "(it installs .venv), or activate your virtualenv", 1)


def _fail(message: str, status: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def main() -> None:
    _reexec_in_venv()
    from provider import devenv

    devenv.load()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provider.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    _one_line_command_errors()
    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018  (loads the settings: a bad setting fails here, in one line)
        execute_from_command_line(sys.argv)
    except (ImproperlyConfigured, DatabaseError) as exc:
        if "--traceback" in sys.argv:
            raise
        _explain(exc)
    except _keycloak_errors() as exc:  # evaluated only now: the settings and apps are loaded by then
        if "--traceback" in sys.argv:
            raise
        _explain(exc)


def _explain(exc: BaseException) -> None:
    """One line for what stops a command before or outside its own error handling."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError

    if isinstance(exc, ImproperlyConfigured):
        _fail(f"{_one_line(exc)} (see docs/configuration.md)", 2)
    if isinstance(exc, DatabaseError):
        message = " ".join(str(exc).split()) or type(exc).__name__
        if "no such table" in message or ("relation" in message and "does not exist" in message):
            _fail(f"the database is not migrated ({message}): run `python3 manage.py migrate`", 1)
        _fail(f"the database is unavailable: {message}", 1)
    _fail(f"cannot reach Keycloak: {_one_line(exc)}", 1)


def _one_line_command_errors() -> None:
    """A CommandError a command raises is printed as ``error: <one line>`` (Django prints it as is, and a
    database driver's message can span lines); "no such table" gets the remedy. Only for manage.py runs:
    ``call_command`` in tests still raises."""
    from django.core.management.base import (
        BaseCommand,
        CommandError,
        SystemCheckError,  # printed by Django as a readable list: left as is
    )

    run_from_argv = BaseCommand.run_from_argv

    def run_one_line(self: BaseCommand, argv: list[str]) -> None:
        execute = self.execute

        def execute_one_line(*args, **options):
            try:
                return execute(*args, **options)
            except CommandError as exc:
                if options.get("traceback") or isinstance(exc, SystemCheckError):
                    raise
                message = " ".join(str(exc).split())
                if "no such table" in message or ("relation" in message and "does not exist" in message):
                    message += " (the database is not migrated: run `python3 manage.py migrate`)"
                _fail(message, exc.returncode)

        self.execute = execute_one_line
        run_from_argv(self, argv)

    BaseCommand.run_from_argv = run_one_line


def _keycloak_errors() -> tuple[type[BaseException], ...]:
    """Keycloak failures the commands did not already turn into a CommandError (one line too)."""
    found: list[type[BaseException]] = []
    try:
        from tokenversion_server.keycloak_admin import KeycloakUnavailable

        found.append(KeycloakUnavailable)
    except Exception:  # noqa: S110  (an app that cannot load: nothing of Keycloak's to catch)
        pass
    try:
        from keycloak.exceptions import KeycloakError

        found.append(KeycloakError)
    except Exception:  # noqa: S110
        pass
    return tuple(found)


if __name__ == "__main__":
    main()
