"""The local development environment file, ``var/dev.env``, written by the README's first command.

``scripts/provider.sh`` writes it once (mode 0600) with freshly generated secrets, so no development secret
is written in the repository. ``manage.py`` and ``provider/wsgi.py`` read it **only when nothing else is
configured**: when neither ``DJANGO_SETTINGS_MODULE`` nor ``DJANGO_SECRET_KEY`` is set in the environment.
Even then, a variable already set in the environment wins over the file's line (docs/configuration.md).

This module imports nothing from Django: ``manage.py`` calls it before Django is known to be importable.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from provider.env import project_home

BASE_DIR = project_home()
# TOKENVERSION_DEV_ENV names another file (the tests use a temporary one).
DEV_ENV = Path(os.environ.get("TOKENVERSION_DEV_ENV") or BASE_DIR / "var" / "dev.env")

# Variables that hold a secret: the system check tokenversion.W030/E030 names their dev.env values in use
# with DEBUG off.
SECRET_VARIABLES = ("DJANGO_SECRET_KEY", "TOKENVERSION_MAPPER_SECRETS", "TOKENVERSION_EVENT_SECRETS",
                    "TOKENVERSION_FEED_SECRETS")


def parse(text: str) -> dict[str, str]:
    """``NAME=value`` lines; blank lines and ``#`` comments are skipped; no quoting, no expansion."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def read(path: Path = DEV_ENV) -> dict[str, str]:
    """The file's variables, or nothing when it does not exist."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def applies(environ: os._Environ | dict = os.environ) -> bool:
    """Whether the development file is read: only when the environment configures nothing itself."""
    return not environ.get("DJANGO_SETTINGS_MODULE") and not environ.get("DJANGO_SECRET_KEY")


def load(path: Path = DEV_ENV, environ: os._Environ | dict = os.environ) -> bool:
    """Fill in, from the file, the variables the environment does not set; True when the file was read."""
    if not applies(environ):
        return False
    values = read(path)
    for name, value in values.items():
        environ.setdefault(name, value)
    return bool(values)


def generate() -> dict[str, str]:
    """A fresh development environment: DEBUG on, SQLite in var/, random secrets (never shipped)."""
    return {
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "sqlite:///var/provider.sqlite3",
        "TOKENVERSION_MAPPER_SECRETS": "mapper-" + secrets.token_urlsafe(32),
        "TOKENVERSION_EVENT_SECRETS": "event-" + secrets.token_urlsafe(32),
        "TOKENVERSION_FEED_SECRETS": "feed-" + secrets.token_urlsafe(32),
    }


def write(path: Path = DEV_ENV) -> bool:
    """Write the file unless it exists (its secrets must survive restarts); True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{name}={value}\n" for name, value in generate().items())
    header = ("# Local development environment, written by scripts/provider.sh. Secret: mode 0600, never commit.\n"
              "# manage.py and provider/wsgi.py read it when DJANGO_SETTINGS_MODULE and DJANGO_SECRET_KEY are\n"
              "# not set; a variable set in the environment wins over its line here. Delete it to regenerate.\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(header + body)
    return True


def main(argv: list[str]) -> int:
    """``python -m provider.devenv write`` | ``get NAME``: used by scripts/provider.sh."""
    if argv[:1] == ["write"] and len(argv) == 1:
        write()
        return 0
    if argv[:1] == ["get"] and len(argv) == 2:
        load()
        value = os.environ.get(argv[1], "")
        print(value.split(",")[0] if argv[1].endswith("_SECRETS") else value)
        return 0
    print("usage: python -m provider.devenv write | get NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
