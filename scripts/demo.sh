#!/usr/bin/env bash
# The live demo: starts Keycloak (downloaded once from Maven Central), the provider and the sample service on
# loopback, and plays the seed scenario with a timeline. Installs a JDK 17 and Maven from Debian's
# packages when missing (to build the extension).
#   bash scripts/demo.sh [--keep-running]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv dev
ensure_java_maven
exec "$PY" -m sample_service.demo "$@"
