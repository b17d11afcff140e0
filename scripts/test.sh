#!/usr/bin/env bash
# The README's second command and what CI runs: the whole test suite.
#   1. lint (ruff), 2. the Java extension's unit tests and JAR (Maven),
#   3. pytest on SQLite, 4. pytest on PostgreSQL with Redis and a real Keycloak (end to end).
# Installs and starts everything it needs: a JDK 17, Maven, PostgreSQL and Redis from Debian's packages (when
# missing), Keycloak from Maven Central into ~/.cache/tokenversion, the extension's dependencies into ~/.m2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv dev
"$VENV/bin/ruff" check .
echo "== Keycloak extension: JUnit tests and JAR (Maven)"
ensure_java_maven
(cd keycloak && mvn -B package 2>&1 | grep -E "Tests run:|BUILD|ERROR|FAIL" ; exit "${PIPESTATUS[0]}")
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"
mkdir -p var
echo "== pytest on SQLite"
TOKENVERSION_TEST_DB=sqlite "$VENV/bin/pytest" -q -m "not keycloak and not postgres" "$@"
echo "== pytest on PostgreSQL, with the end-to-end tests (real Keycloak, provider and sample service processes)"
TOKENVERSION_TEST_DB=postgres "$VENV/bin/pytest" -q "$@"
