#!/usr/bin/env bash
# The live demo: starts Keycloak (downloaded once from Maven Central), the provider and the sample service on
# loopback, and plays the seed scenario with a timeline. Needs a JDK 17 and Maven (to build the extension).
#   bash scripts/demo.sh [--keep-running]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv dev
exec "$PY" -m sample_service.demo "$@"
