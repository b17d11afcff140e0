# Shared by the scripts: the project's virtualenv, installed from pyproject.toml.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TOKENVERSION_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

ensure_venv() {  # ensure_venv EXTRAS  (e.g. "redis" or "dev"): the service package and the provider (server/)
  local extras="$1" stamp="$VENV/.installed-$1"
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/server/pyproject.toml" -nt "$stamp" ]; then
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e "$ROOT[$extras]" -e "$ROOT/server"
    touch "$stamp"
  fi
}
