#!/usr/bin/env bash
# Install (from Debian's packages) and start the PostgreSQL and Redis servers the tests use, on loopback.
#   scripts/services.sh start | stop | env
# State lives outside the repo in $TOKENVERSION_RUN (default /tmp/tokenversion-run).
set -euo pipefail
RUN="${TOKENVERSION_RUN:-/tmp/tokenversion-run}"
PGPORT="${TOKENVERSION_PGPORT:-55432}"
REDIS_PORT="${TOKENVERSION_REDIS_PORT:-56379}"
PGDATA="$RUN/pgdata"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "services.sh: $* missing and not root; install it with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  echo "services.sh: installing $* from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_pg() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

start_postgres() {
  [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || apt_install postgresql
  local bin; bin="$(pg_bin)"
  mkdir -p "$RUN"; chmod 755 "$RUN"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
    as_pg "'$bin/initdb' -D '$PGDATA' -A trust -U postgres --no-sync >/dev/null"
  fi
  if ! as_pg "'$bin/pg_ctl' -D '$PGDATA' status >/dev/null 2>&1"; then
    as_pg "'$bin/pg_ctl' -D '$PGDATA' -l '$PGDATA/server.log' -w -t 60 start \
      -o \"-p $PGPORT -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off -c synchronous_commit=off -c max_connections=200\"" >/dev/null
  fi
  local psql="$bin/psql -h 127.0.0.1 -p $PGPORT -U postgres -v ON_ERROR_STOP=1 -qtA"
  if [ "$($psql -c "SELECT 1 FROM pg_roles WHERE rolname='tokenversion'")" != 1 ]; then
    $psql -c "CREATE ROLE tokenversion LOGIN CREATEDB PASSWORD 'tokenversion'"
  fi
  if [ "$($psql -c "SELECT 1 FROM pg_database WHERE datname='tokenversion'")" != 1 ]; then
    $psql -c "CREATE DATABASE tokenversion OWNER tokenversion"
  fi
  echo "PostgreSQL on 127.0.0.1:$PGPORT" >&2
}

start_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$RUN/redis"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
      --dir "$RUN/redis" --pidfile "$RUN/redis/redis.pid" --logfile "$RUN/redis/redis.log"
    for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$REDIS_PORT" ping >/dev/null
  fi
  echo "Redis on 127.0.0.1:$REDIS_PORT" >&2
}

case "${1:-start}" in
  start) start_postgres; start_redis ;;
  stop)
    [ -f "$PGDATA/PG_VERSION" ] && as_pg "'$(pg_bin)/pg_ctl' -D '$PGDATA' -m fast stop" >/dev/null 2>&1 || true
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true ;;
  env)
    echo "export PGHOST=127.0.0.1 PGPORT=$PGPORT PGUSER=tokenversion PGPASSWORD=tokenversion"
    echo "export TOKENVERSION_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
