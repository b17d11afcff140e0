"""Small, strict readers for configuration from environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str, base_dir: Path) -> dict:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``postgresql://user:pw@host:port/name``."""
    parsed = urlparse(url)
    options = dict(parse_qsl(parsed.query))
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:]) if parsed.path.startswith("/") else unquote(parsed.path)
        name = Path(path) if Path(path).is_absolute() else base_dir / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(name),
            # Kept open like PostgreSQL's: opening the file and running init_command costs more than a
            # claims call's read (docs/benchmarks.md, "the claims endpoint at its floor"); ?conn_max_age=0 opts out.
            "CONN_MAX_AGE": int(options.pop("conn_max_age", 60)),
            # IMMEDIATE makes every write transaction take the lock up front: no lost updates, no deadlocks.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    if parsed.scheme in ("postgres", "postgresql"):
        # ?server_side_binding=1&prepare_threshold=N: server-side parameters, and statements run N times on a
        # connection are prepared (PostgreSQL skips parse and plan); not behind a transaction-pooling proxy.
        if "server_side_binding" in options:
            options["server_side_binding"] = _flag(options.pop("server_side_binding"), "server_side_binding")
        if "prepare_threshold" in options:
            options["prepare_threshold"] = int(options.pop("prepare_threshold"))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": int(options.pop("conn_max_age", 60)),
            # On (the default), a reused connection costs one "SELECT 1" round trip per request;
            # ?conn_health_checks=0 saves it (bench/claims_load.py), a dead connection then fails one request.
            "CONN_HEALTH_CHECKS": _flag(options.pop("conn_health_checks", "1"), "conn_health_checks"),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"DATABASE_URL must be sqlite:// or postgresql://, got scheme {parsed.scheme!r}")


def _flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"DATABASE_URL option {name} must be 1/0 or true/false, got {value!r}")


def project_home() -> Path:
    """Where relative paths (``var/``: the development database, ``dev.env``, static files) live.

    ``TOKENVERSION_HOME`` when set; else the working directory when it is a checkout (``manage.py`` runs there);
    else the checkout this file sits in (``server/provider/env.py``, two levels down); else the working
    directory (an installed wheel).
    """
    home = env_str("TOKENVERSION_HOME")
    if home:
        return Path(home)
    cwd = Path.cwd()
    if (cwd / "manage.py").is_file():
        return cwd
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "manage.py").is_file() else cwd
