"""Runs the whole product on loopback as real processes: Keycloak (with the extension), the provider, and the
sample service. Used by the end-to-end tests (``tests/e2e``) and the live demo (``sample_service/demo.py``).

Nothing here is a mock: Keycloak is the real server started by ``scripts/keycloak.sh``, the provider and the
sample service are gunicorn processes on their own ports, and the realm is configured by the
provider's own ``keycloak_setup`` command.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOCK_PATH = Path("/tmp/tokenversion-stack.lock")


def pom_keycloak_version() -> str:
    """``<keycloak.version>`` of keycloak/pom.xml: the version the extension is built against and tested on."""
    found = re.search(r"<keycloak\.version>([^<]+)</keycloak\.version>", (ROOT / "keycloak" / "pom.xml").read_text())
    if not found:
        raise StackError("cannot read <keycloak.version> from keycloak/pom.xml")
    return found.group(1).strip()


class StackError(RuntimeError):
    """A part of the stack could not be started; the message says which and shows its log."""


@dataclass
class StackConfig:
    keycloak_port: int = int(os.environ.get("KC_PORT", "8080"))
    keycloak_mgmt_port: int = int(os.environ.get("KC_MGMT_PORT", "9000"))
    # Keycloak version to run (scripts/keycloak.sh KC_VERSION); None: the one pinned in keycloak/pom.xml
    keycloak_version: str | None = os.environ.get("KC_VERSION") or None
    provider_port: int = 18000
    # threads per provider worker (2 workers): each waiting HTTP-feed long-poll holds one, so a benchmark with
    # many HttpFeedStore services raises it to keep threads free for Keycloak's calls. FEED_MAX_LONG_POLLS is
    # set to this minus 2, the docs' sizing rule (docs/scaling.md)
    provider_threads: int = 8
    # seconds gunicorn keeps an idle client connection open (its --keep-alive; gunicorn's default is 2). The
    # mapper's HTTP client (Java's HttpClient) keeps its connections to the provider in a pool and reuses them;
    # with 2 s, a connection idle between two logins was closed and the next claims call paid a new TCP
    # connection. Longer than the gaps between logins keeps the mapper on its pooled connections
    # (bench/keycloak_paths.py counts them).
    provider_keep_alive: int = 75
    service_port: int = 18001
    realm: str = "tokenversion"
    login_client: str = "tokenversion-app"
    audience: str = "tokenversion-api"
    admin_username: str = os.environ.get("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
    admin_password: str = os.environ.get("KC_BOOTSTRAP_ADMIN_PASSWORD", "admin")
    mapper_secret: str = "e2e-mapper-secret-0123456789abcdef0123"
    event_secret: str = "e2e-event-secret-0123456789abcdef0123"
    provider_admin_password: str = "e2e-provider-admin-password"
    # postgresql://... or sqlite:////abs/path; the provider's database, created fresh by prepare_database()
    database_url: str = "sqlite:////tmp/tokenversion-e2e/provider.sqlite3"
    service_cache_ttl: float = 0.25
    feed_secret: str = "e2e-feed-secret-0123456789abcdef012345"
    # Redis for the push feed (the provider publishes, `tokenversion_publisher` certifies freshness); None: HTTP
    # feed only. scripts/services.sh starts one and exports its URL.
    redis_url: str | None = os.environ.get("TOKENVERSION_TEST_REDIS_URL")
    work_dir: Path = Path("/tmp/tokenversion-e2e")
    extra_provider_env: dict[str, str] = field(default_factory=dict)
    # Every service the stack starts reports to the provider (issue 14: enforcement receipts and revoked-token
    # uses), each with its own key made by ``create_service_key <service name>``; False: services never report.
    report: bool = True
    # stop a Keycloak already running and start one from this tree's extension (a benchmark must measure the
    # extension it was given, not the one another checkout left running)
    restart_keycloak: bool = False

    @property
    def keycloak_url(self) -> str:
        return f"http://127.0.0.1:{self.keycloak_port}"

    @property
    def issuer(self) -> str:
        return f"{self.keycloak_url}/realms/{self.realm}"

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    @property
    def events_url(self) -> str:
        return f"{self.provider_url}/tokenversion/events"

    @property
    def reports_url(self) -> str:
        return f"{self.provider_url}/tokenversion/reports"


class Process:
    """A child process with its output in a log file, stopped with its whole process group."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # closed in stop()
        self.popen = subprocess.Popen(args, env=dict(env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StackError(f"{self.name} exited with {self.popen.returncode}; log:\n{self.log_tail()}")
            if http_status(url) == 200:
                return
            time.sleep(0.05)
        raise StackError(f"{self.name} not answering {url} after {timeout} s; log:\n{self.log_tail()}")

    def worker_pids(self) -> set[int]:
        """The pids of the gunicorn workers under this process (the master), which serve the requests and
        report to the provider each as their own instance; empty while none has been forked yet."""
        pids: set[int] = set()
        for children in Path(f"/proc/{self.popen.pid}/task").glob("*/children"):
            try:
                pids.update(int(pid) for pid in children.read_text().split())
            except OSError:  # the task ended meanwhile
                continue
        return pids

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def seconds_until_refused(call: Callable[[], int], settle: float, within: float) -> float:
    """Seconds from now until every worker of a service refuses a token, polling ``call`` (-> HTTP status).

    Workers cache revocation state for a short while each, so one refusal does not mean the next request
    (maybe served by another worker) is refused too. This polls until the service has refused for ``settle``
    seconds without a single acceptance, and returns the time of the first refusal after the last acceptance.
    Raises ``StackError`` when that is not reached within ``within`` seconds, or on any status but 200/401.
    """
    start = time.perf_counter()
    refused_since: float | None = None
    last_accepted: float | None = None
    while True:
        status = call()
        now = time.perf_counter() - start
        if status == 200:
            last_accepted, refused_since = now, None
        elif status == 401:
            if refused_since is None:
                refused_since = now
            if now - refused_since >= settle:
                return refused_since
        else:
            raise StackError(f"unexpected status {status} while waiting for a refusal")
        if now > within + settle:
            raise StackError(f"token still accepted {last_accepted:.3f} s after the revocation")
        time.sleep(0.005)


# gunicorn's default access log line, then the client's port (the requests of one port came over one connection:
# bench/keycloak_paths.py counts the mapper's connections with it) and the request's time in microseconds
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" port=%({remote_port}e)s us=%(D)s'


def gunicorn(app: str, port: int, workers: int, threads: int = 4, keep_alive: int | None = None) -> list[str]:
    """The production server, not runserver: under runserver each claims call of the mapper made a refresh
    grant about 47 ms slower (measured with bench/keycloak_paths.py; likely Nagle against delayed ACK on
    runserver's separate header and body writes, not verified). gthread workers keep connections alive
    (``keep_alive`` seconds; None: gunicorn's 2 s), sync workers would close each one."""
    return [PYTHON, "-m", "gunicorn", f"{app}:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
            *(["--keep-alive", str(keep_alive)] if keep_alive is not None else []),
            "--graceful-timeout", "2", "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT]


def http_status(url: str, headers: Mapping[str, str] | None = None, timeout: float = 2.0) -> int:
    """The status of a GET, 0 when nothing answers."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Stack:
    """Keycloak + provider + sample service, on the ports of a ``StackConfig``."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.provider: Process | None = None
        self.publisher: Process | None = None
        self.attribute_sync: Process | None = None  # attribute mode's worker, when a test runs it
        self.services: dict[str, Process] = {}
        # service name -> its report key, made once per provider database (prepare_database forgets them)
        self.service_keys: dict[str, str] = {}
        self.started_keycloak = False
        self._feed_public_key: str | None = None

        # what switch_keycloak(None) returns to: KC_VERSION of the environment, else the pinned version
        self.default_keycloak_version = self.config.keycloak_version
        self._lock: TextIO | None = None
        self.config.work_dir.mkdir(parents=True, exist_ok=True)

    # Keycloak ---------------------------------------------------------------------------------------------

    def keycloak_script(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "KC_PORT": str(self.config.keycloak_port),
            "KC_MGMT_PORT": str(self.config.keycloak_mgmt_port),
            "KC_BOOTSTRAP_ADMIN_USERNAME": self.config.admin_username,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self.config.admin_password,
            "TOKENVERSION_EVENTS_URL": self.config.events_url,
            "TOKENVERSION_EVENT_SECRET": self.config.event_secret,
            "KC_VERSION": self.keycloak_version,
        }
        result = subprocess.run(["bash", str(ROOT / "scripts" / "keycloak.sh"), *args], env=env, cwd=ROOT,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise StackError(f"scripts/keycloak.sh {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
        return result

    def ensure_keycloak(self) -> None:
        """Start Keycloak unless one started by scripts/keycloak.sh already runs with this stack's listener URL.

        The event listener's URL and secret are server-wide options fixed at start, so a server started for
        something else is restarted rather than trusted.
        """
        status = self.keycloak_script("status", check=False)
        if status.returncode == 0 and not self.config.restart_keycloak and self._keycloak_sends_events_here() \
                and self.running_keycloak_version() == self.keycloak_version and self._runs_this_extension():
            return
        if status.returncode != 3:
            self.keycloak_script("stop")
        self.keycloak_script("start")
        self.started_keycloak = True

    @property
    def keycloak_version(self) -> str:
        return self.config.keycloak_version or pom_keycloak_version()

    def running_keycloak_version(self) -> str | None:
        """The version the running server announced at start (its log), None if it said nothing yet."""
        logs = self.keycloak_script("logs", "100000", check=False).stdout
        found = re.findall(r"\bKeycloak (\d+\.\d+\.\d+) on JVM", logs)
        return found[-1] if found else None

    def switch_keycloak(self, version: str | None) -> None:
        """Run Keycloak ``version`` (None: the stack's default) in place of the running one, on the same ports, and
        configure its realm with ``keycloak_setup``; the provider and the default service are restarted.

        For the compatibility matrix (tests/e2e/test_versions.py). A fresh server has a fresh realm and
        signing keys.
        """
        self.config.keycloak_version = version or self.default_keycloak_version
        if self.running_keycloak_version() == self.keycloak_version \
                and self.keycloak_script("status", check=False).returncode == 0:
            return
        self.keycloak_script("stop")
        self.keycloak_script("start")
        self.started_keycloak = True
        self.keycloak_setup()
        # The provider (logout tokens) and the services learn the new server's keys on the first unknown kid,
        # but only once per 30 s refetch cooldown: restart them, and warm them up with one login until a token
        # carries the claim and is accepted (a cold provider worker can miss the mapper's 500 ms read timeout on
        # a loaded machine, and the first token then has no claim).
        if self.provider is not None:
            self.stop_provider()
            self.start_provider()
        if "service" in self.services:
            self.services.pop("service").stop()
            self.start_service()
            self.warm_up()

    def warm_up(self, within: float = 60.0) -> None:
        """Log a throwaway user in until its token carries ``token_version`` and the service accepts it.

        So that the first test's login does not meet a cold provider: on this loaded machine the first claims
        call of a fresh provider worker once took longer than the mapper's 500 ms read timeout, and a user the
        mapper had never seen got a token without the claim (Keycloak logged the timeout)."""
        import jwt

        self.ensure_user("warm-up", "warm-up-password")
        deadline = time.monotonic() + within
        while True:
            token = self.openid().token("warm-up", "warm-up-password")["access_token"]
            has_claim = "token_version" in jwt.decode(token, options={"verify_signature": False})
            status = http_status(f"{self.config.service_url}/api/orders", {"Authorization": f"Bearer {token}"})
            if has_claim and status == 200:
                return
            if time.monotonic() > deadline:
                raise StackError(f"after switching Keycloak: claim present {has_claim}, service answered {status}")
            time.sleep(1)

    def _runs_this_extension(self) -> bool:
        """False when the running server loaded another build of the extension (another worktree's, or this one's
        before a change): its mapper might not know this build's config keys and would ignore them silently."""
        self.keycloak_script("build-extension")
        result = self.keycloak_script("start", check=False)  # running and ready: only compares the JARs
        return "differs from the running one" not in result.stdout + result.stderr

    def _keycloak_sends_events_here(self) -> bool:
        logs = self.keycloak_script("logs", "100000", check=False).stdout
        lines = [line for line in logs.splitlines() if "event listener sends to" in line]
        return bool(lines) and f"sends to {self.config.events_url} " in lines[-1]

    def keycloak_admin(self):
        from keycloak import KeycloakAdmin

        return KeycloakAdmin(server_url=self.config.keycloak_url + "/", username=self.config.admin_username,
                             password=self.config.admin_password, realm_name=self.config.realm,
                             user_realm_name="master")

    def openid(self, client_id: str | None = None):
        from keycloak import KeycloakOpenID

        return KeycloakOpenID(server_url=self.config.keycloak_url + "/", realm_name=self.config.realm,
                              client_id=client_id or self.config.login_client)

    def ensure_user(self, username: str, password: str, email: str | None = None) -> str:
        """Create the Keycloak user if missing (with a password); returns its id, the tokens' ``sub``."""
        admin = self.keycloak_admin()
        user_id = admin.get_user_id(username)
        if user_id is None:
            user_id = admin.create_user({
                "username": username, "email": email or f"{username}@example.com", "enabled": True,
                "emailVerified": True, "firstName": username.capitalize(), "lastName": "Example",
                "credentials": [{"type": "password", "value": password, "temporary": False}],
            })
        else:
            admin.set_user_password(user_id, password, temporary=False)
        return user_id

    # Provider ---------------------------------------------------------------------------------------------

    def provider_env(self) -> dict[str, str]:
        c = self.config
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "provider.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "e2e-provider-secret-key-" + "x" * 40,
            "DJANGO_SECURE_COOKIES": "0",  # plain HTTP on loopback
            "DJANGO_SSL_REDIRECT": "0",
            "DATABASE_URL": c.database_url,
            "TOKENVERSION_ISSUER": c.issuer,
            "TOKENVERSION_AUDIENCE": c.audience,
            "TOKENVERSION_MAPPER_SECRETS": c.mapper_secret,
            "TOKENVERSION_EVENT_SECRETS": c.event_secret,
            "TOKENVERSION_BACKCHANNEL_AUDIENCE": c.login_client,
            "KEYCLOAK_ADMIN_USERNAME": c.admin_username,
            "KEYCLOAK_ADMIN_PASSWORD": c.admin_password,
            "TOKENVERSION_FEED_SECRETS": c.feed_secret,
            "TOKENVERSION_FEED_MAX_LONG_POLLS": str(max(1, c.provider_threads - 2)),
            "PYTHONUNBUFFERED": "1",
            # With Redis, the signing key as production keeps it: a 0600 file, for the provider and publisher only
            **({"TOKENVERSION_REDIS_URL": c.redis_url,
                "TOKENVERSION_FEED_SIGNING_KEY_FILE": str(self.ensure_feed_key()[0])} if c.redis_url else {}),
            **c.extra_provider_env,
        }
        env.pop("TOKENVERSION_TEST_ISSUER", None)
        return env

    def manage(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """``manage.py`` of the provider, with the provider's environment."""
        result = subprocess.run([PYTHON, "manage.py", *args], env=self.provider_env(), cwd=ROOT,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
        return result

    def prepare_database(self) -> None:
        """A fresh, migrated provider database with a superuser ``admin``."""
        url = self.config.database_url
        if url.startswith("sqlite:"):
            path = Path(url.split("sqlite://", 1)[1])
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            import psycopg

            name = url.rsplit("/", 1)[1].split("?", 1)[0]
            server = url.rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
        self.manage("migrate", "--noinput", "-v", "0")
        self.service_keys.clear()
        env = self.provider_env()
        env["DJANGO_SUPERUSER_PASSWORD"] = self.config.provider_admin_password
        subprocess.run([PYTHON, "manage.py", "createsuperuser", "--noinput", "--username", "admin",
                        "--email", "admin@localhost"], env=env, cwd=ROOT, check=True, capture_output=True)

    def keycloak_setup(self, *extra: str) -> str:
        result = self.manage("keycloak_setup", "--create-realm", "--direct-access-grants",
                             "--provider-url", self.config.provider_url, *extra)
        return result.stdout

    @property
    def feed_key_path(self) -> Path:
        return self.config.work_dir / "feed-signing.pem"

    def ensure_feed_key(self) -> tuple[Path, str]:
        """The Redis signing key file (mode 0600, what ``tokenversion_feed_keygen --out`` writes), made unless an
        earlier run left one, and the public value that services list in ``verify_keys``."""
        from tokenversion.core.feed_protocol import FeedSigner, generate_signing_key, public_value

        path = self.feed_key_path
        if self._feed_public_key is None:
            if not path.exists():
                pem, _ = generate_signing_key()
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(pem)
            self._feed_public_key = public_value(FeedSigner.from_pem(path.read_text()).public_key)
        return path, self._feed_public_key

    def start_provider(self) -> Process:
        if self.provider is not None and self.provider.alive():
            return self.provider
        self.provider = Process(
            "provider",
            gunicorn("provider.wsgi", self.config.provider_port, workers=2, threads=self.config.provider_threads,
                     keep_alive=self.config.provider_keep_alive),
            self.provider_env(),
            self.config.work_dir / "provider.log",
        )
        self.provider.wait_http(f"{self.config.provider_url}/health")
        if self.config.redis_url and (self.publisher is None or not self.publisher.alive()):
            self.publisher = Process("publisher", [PYTHON, "manage.py", "tokenversion_publisher"],
                                     self.provider_env(), self.config.work_dir / "publisher.log")
        return self.provider

    def start_attribute_sync(self, **env: str) -> Process:
        """Attribute mode's worker (``manage.py tokenversion_attribute_sync``), with the provider's environment
        plus ``env`` (e.g. ``KEYCLOAK_URL`` pointing at a fault proxy)."""
        self.stop_attribute_sync()
        self.attribute_sync = Process("attribute-sync", [PYTHON, "manage.py", "tokenversion_attribute_sync"],
                                      {**self.provider_env(), **env}, self.config.work_dir / "attribute-sync.log")
        return self.attribute_sync

    def stop_attribute_sync(self) -> None:
        if self.attribute_sync is not None:
            self.attribute_sync.stop()
            self.attribute_sync = None

    def stop_provider(self) -> None:
        """Stops the provider (the publisher keeps running: it is a separate process in production too)."""
        if self.provider is not None:
            self.provider.stop()
            self.provider = None

    def remote_store_env(self, kind: str) -> dict[str, str]:
        """Environment for a sample service with no database: it learns revocations from the provider's HTTP
        feed (``feed``) or from Redis (``redis``, with the HTTP feed to close gaps)."""
        options = {"feed_url": f"{self.config.provider_url}/tokenversion/feed", "secret": self.config.feed_secret}
        if kind == "feed":
            store = "tokenversion.stores.feed.HttpFeedStore"
        elif kind == "redis":
            if not self.config.redis_url:
                raise StackError("no Redis: set TOKENVERSION_TEST_REDIS_URL (scripts/services.sh env)")
            store, options = "tokenversion.stores.redis.RedisStore", {**options, "redis_url": self.config.redis_url,
                                                                      "verify_keys": [self.ensure_feed_key()[1]]}
        else:
            raise ValueError(kind)
        return {"SAMPLE_STORE": "custom", "TOKENVERSION_STORE": store,
                "TOKENVERSION_STORE_OPTIONS": json.dumps(options), "DATABASE_URL": ""}

    def sql(self, query: str, *params: Any) -> list[tuple]:
        """Read the provider's database directly (assertions on the audit trail and user rows)."""
        url = self.config.database_url
        if url.startswith("sqlite:"):
            with sqlite3.connect(url.split("sqlite://", 1)[1]) as conn:
                return conn.execute(query.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(url) as conn:
            return conn.execute(query, params).fetchall()

    # Sample service ---------------------------------------------------------------------------------------

    def service_key(self, name: str) -> str:
        """The report key of service ``name``, made with the provider's ``create_service_key`` the first time
        (as an operator does: the command prints the key once, on its last line)."""
        if name not in self.service_keys:
            output = self.manage("create_service_key", name).stdout
            lines = output.strip().splitlines()
            key = lines[-1].strip() if lines else ""
            if not key.startswith("tvs_"):
                raise StackError(f"create_service_key {name} printed no key:\n{output}")
            self.service_keys[name] = key
        return self.service_keys[name]

    def report_env(self, name: str) -> dict[str, str]:
        """The environment that makes service ``name`` report to the provider with its own key."""
        return {"TOKENVERSION_REPORT_URL": self.config.reports_url, "TOKENVERSION_REPORT_KEY": self.service_key(name),
                "TOKENVERSION_SERVICE_NAME": name}

    def service_env(self, **overrides: str) -> dict[str, str]:
        c = self.config
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sample_service.settings",
            "DATABASE_URL": c.database_url,
            "SAMPLE_STORE": "db",
            "TOKENVERSION_ISSUER": c.issuer,
            "TOKENVERSION_AUDIENCE": c.audience,
            "TOKENVERSION_CACHE_TTL": str(c.service_cache_ttl),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(overrides)
        return env

    def start_service(self, name: str = "service", port: int | None = None, workers: int = 2, **env: str) -> Process:
        """A sample service under gunicorn; ``name`` is also the service's name at the provider, which it reports
        to with its own key unless ``StackConfig.report`` is off."""
        port = port or self.config.service_port
        if self.config.report:
            env = {**self.report_env(name), **env}
        process = Process(
            name,
            gunicorn("sample_service.wsgi", port, workers=workers),
            self.service_env(**env),
            self.config.work_dir / f"{name}.log",
        )
        process.wait_http(f"http://127.0.0.1:{port}/health")
        self.services[name] = process
        return process

    # Fleet visibility (issue 14): what the provider says about the services -------------------------------

    def admin_session(self):
        """A logged-in session of the provider's Django admin (user ``admin``), as a support person's browser
        has: it reads the admin's pages and the REST API's GET endpoints."""
        import requests

        session = requests.Session()
        base = self.config.provider_url
        session.get(f"{base}/admin/login/", timeout=5).raise_for_status()
        response = session.post(f"{base}/admin/login/?next=/admin/", allow_redirects=False, timeout=5, data={
            "username": "admin", "password": self.config.provider_admin_password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"], "next": "/admin/",
        })
        if response.status_code != 302:
            raise StackError(f"cannot log in to the provider's admin ({response.status_code}): {response.text[:300]}")
        return session

    def provider_json(self, session, path: str, **params: Any) -> Any:
        """GET a JSON answer of the provider's REST API; ``StackError`` on anything but 200."""
        response = session.get(f"{self.config.provider_url}{path}", params=params or None, timeout=5)
        if response.status_code != 200:
            raise StackError(f"GET {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def running_workers(self) -> dict[str, set[int]]:
        """Service name -> pids of its gunicorn workers: every process of the stack that serves and reports."""
        return {name: process.worker_pids() for name, process in self.services.items()}

    def reporting_workers(self) -> dict[str, set[int]]:
        """Service name -> pids of the running workers the provider has heard from (its service instances)."""
        running = self.running_workers()
        heard: dict[str, set[int]] = {}
        for service, pid in self.sql("SELECT service, pid FROM tokenversion_server_serviceinstance"):
            if pid in running.get(service, ()):
                heard.setdefault(service, set()).add(pid)
        return heard

    def wait_every_worker_reporting(self, call: Callable[[], object], within: float = 60.0) -> int:
        """Run ``call`` (requests to every service) until each worker of each service has served one and
        reported to the provider (a worker's reporter starts with its first request); returns their number."""
        deadline = time.monotonic() + within
        while True:
            call()
            running, heard = self.running_workers(), self.reporting_workers()
            if heard == running and all(running.values()):
                return sum(len(pids) for pids in running.values())
            if time.monotonic() > deadline:
                raise StackError(f"the provider heard from {heard}; running workers: {running}")
            time.sleep(0.2)

    def enforcement(self, session, event_id: int) -> dict[str, Any]:
        """The provider's enforcement answer for one revocation event (its audit id), from its REST API."""
        return self.provider_json(session, f"/tokenversion/revocations/{event_id}/enforcement")

    def wait_enforced(self, session, event_id: int, within: float = 30.0) -> dict[str, Any]:
        """Poll the enforcement answer until the live service processes it counts are exactly the stack's
        running workers and all of them enforce the revocation; returns that answer.

        Processes of services stopped a moment ago stay live for the provider's live window (15 s by default)
        after their last report, and count as behind meanwhile: this waits them out."""
        deadline = time.monotonic() + within
        while True:
            answer = self.enforcement(session, event_id)
            live: dict[str, set[int]] = {}
            for instance in answer["instances"]:
                if instance["state"] != "silent":
                    live.setdefault(instance["service"], set()).add(instance["pid"])
            if live == self.running_workers() and answer["enforced"] == answer["live"]:
                return answer
            if time.monotonic() > deadline:
                raise StackError(f"revocation {event_id} not enforced by every running worker "
                                 f"{self.running_workers()}: {answer}")
            time.sleep(0.05)

    # Whole stack ------------------------------------------------------------------------------------------

    def start(self) -> Stack:
        # One stack per machine at a time (tests, demo): they would fight over ports and the provider's database.
        self._lock = open(LOCK_PATH, "w")  # closed in close()
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.ensure_keycloak()
        self.prepare_database()
        self.keycloak_setup()
        self.start_provider()
        self.start_service()
        self.warm_up()
        return self

    def close(self, stop_keycloak: bool | None = None) -> None:
        for process in self.services.values():
            process.stop()
        self.services.clear()
        self.stop_provider()
        self.stop_attribute_sync()
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        if stop_keycloak if stop_keycloak is not None else self.started_keycloak:
            self.keycloak_script("stop", check=False)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
