#!/usr/bin/env bash
# The README's second command and what CI runs: the whole test suite.
#   1. lint (ruff), 2. the Java extension's unit tests and JAR (Maven),
#   3. pytest on SQLite, 4. pytest on PostgreSQL with Redis and a real Keycloak (end to end).
# Installs and starts everything it needs: a JDK 17, Maven, PostgreSQL, Redis and Chromium from Debian's
# packages (when missing), Keycloak from Maven Central into ~/.cache/tokenversion, the extension's dependencies
# into ~/.m2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv dev
"$VENV/bin/ruff" check .
"$VENV/bin/lint-imports" --no-cache  # import boundaries (pyproject.toml [tool.importlinter])
echo "== Keycloak extension: JUnit tests and JAR (Maven)"
ensure_java_maven
(cd keycloak && mvn -B package 2>&1 | grep -E "Tests run:|BUILD|ERROR|FAIL" ; exit "${PIPESTATUS[0]}")
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"
mkdir -p var
ensure_chromium() {  # the admin's browser test (tests/test_admin_browser.py) drives Debian's headless Chromium
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: Chromium missing; install it with: sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  echo "test.sh: installing chromium and chromium-driver from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
}
ensure_chromium
ensure_prometheus() {  # the metrics test (tests/test_prometheus.py) scrapes with Debian's Prometheus server
  command -v prometheus >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: Prometheus missing; install it with: sudo apt-get install -y prometheus" >&2
    exit 1
  fi
  echo "test.sh: installing prometheus from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}
ensure_prometheus
# The gateway tests (tests/test_gateway_nginx.py, test_gateway_caddy.py) run Debian's nginx and Caddy as their own
# processes, with their own configs.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
command -v caddy >/dev/null || apt_install caddy
echo "== pytest on SQLite"
TOKENVERSION_TEST_DB=sqlite "$VENV/bin/pytest" -q -m "not keycloak and not postgres and not quickstart" "$@"
echo "== pytest on PostgreSQL, with the end-to-end tests (real Keycloak, provider and sample service processes)"
TOKENVERSION_TEST_DB=postgres "$VENV/bin/pytest" -q "$@"
echo "== benchmark: the per-request cost of service reports (issue 14; prints its ratio, a figure, not a gate: it fails only if the script fails)"
"$VENV/bin/python" bench/auth_overhead.py --reporting --quick
echo "== the service side on every supported Django line (nox: Django 5.2 with the lowest declared versions, 6.0, 6.1)"
"$VENV/bin/nox" --error-on-missing-interpreters
