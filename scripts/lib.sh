# Shared by the scripts: the project's virtualenv, installed from pyproject.toml.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TOKENVERSION_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

ensure_venv() {  # ensure_venv EXTRAS  (e.g. "redis" or "dev"): the service package and the provider (server/)
  local extras="$1" stamp="$VENV/.installed-$1"
  # dev includes everything: a current dev venv (the tests') already holds what the provider needs
  if [ "$extras" != dev ] && [ -f "$VENV/.installed-dev" ] && [ ! "$ROOT/pyproject.toml" -nt "$VENV/.installed-dev" ] \
     && [ ! "$ROOT/server/pyproject.toml" -nt "$VENV/.installed-dev" ]; then
    stamp="$VENV/.installed-dev"
  fi
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/server/pyproject.toml" -nt "$stamp" ]; then
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e "$ROOT[$extras]" -e "$ROOT/server"
    touch "$stamp"
  fi
}

apt_install() {  # apt_install PACKAGE...: from Debian's packages, as scripts/services.sh does
  if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): $* missing and not root; install it with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  echo "$(basename "$0"): installing $* from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

java_major() {  # the major version of the java on PATH, or nothing
  command -v java >/dev/null || return 0
  java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p'
}

ensure_java_maven() {  # a JDK 17+ (javac) and Maven, from Debian's packages when missing
  local major; major="$(java_major)"
  if ! command -v javac >/dev/null || [ -z "$major" ] || [ "$major" -lt 17 ]; then
    apt_install openjdk-17-jdk-headless
  fi
  command -v mvn >/dev/null || apt_install maven
}
