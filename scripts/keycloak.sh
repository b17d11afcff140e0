#!/usr/bin/env bash
# Run a real Keycloak (the version pinned in keycloak/pom.xml, or KC_VERSION) with the tokenversion extension, for
# tests and demos. Loopback only, dev mode, H2 dev database.
#
#   scripts/keycloak.sh install            download + verify (.sha1 from Maven Central) + unpack, once
#   scripts/keycloak.sh build-extension    mvn -q package in keycloak/ unless the JAR is newer than the sources
#   scripts/keycloak.sh start [--keep-data] [-- extra kc.sh args]
#                                          install, build, copy the JAR to providers/, start-dev, wait until ready
#   scripts/keycloak.sh stop               stop the server started by this script (pid file), wait for it
#   scripts/keycloak.sh restart [...]      stop, then start
#   scripts/keycloak.sh status             exit 0 if running and ready, 1 if running but not ready, 3 if stopped
#   scripts/keycloak.sh home               print the unpacked server's directory
#   scripts/keycloak.sh logs [N]           print the last N (default 100) lines of the server log
#
# Environment (all optional):
#   KC_VERSION                    Keycloak version to run (default: <keycloak.version> of keycloak/pom.xml); each
#                                 version is cached in its own directory; the compatibility matrix uses this
#   TOKENVERSION_CACHE            cache dir outside the repo (default ~/.cache/tokenversion)
#   KC_PORT / KC_MGMT_PORT        HTTP port (8080) / management port with /health (9000)
#   KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD   first admin of the master realm (admin/admin)
#   TOKENVERSION_EVENTS_URL       -> event listener SPI option spi-events-listener--tokenversion--url
#   TOKENVERSION_EVENT_SECRET     -> spi-events-listener--tokenversion--secret
#   KC_START_TIMEOUT              seconds to wait for readiness (180)
#   KC_KEEP_DATA=1                keep the H2 database between starts (default: a fresh one each start)
#   JAVA_OPTS_KC_HEAP             heap options passed through to kc.sh (its default: -Xms64m -Xmx512m)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXT_DIR="$ROOT/keycloak"
CACHE="${TOKENVERSION_CACHE:-$HOME/.cache/tokenversion}"
KC_PORT="${KC_PORT:-8080}"
KC_MGMT_PORT="${KC_MGMT_PORT:-9000}"
KC_START_TIMEOUT="${KC_START_TIMEOUT:-180}"
MAVEN_BASE="https://repo.maven.apache.org/maven2/org/keycloak/keycloak-quarkus-dist"

die() { echo "keycloak.sh: $*" >&2; exit 1; }
log() { echo "keycloak.sh: $*" >&2; }

kc_version() {
    local v
    v="$(sed -n 's:.*<keycloak.version>\([^<]*\)</keycloak.version>.*:\1:p' "$EXT_DIR/pom.xml" | head -n 1)"
    [ -n "$v" ] || die "cannot read <keycloak.version> from $EXT_DIR/pom.xml"
    echo "$v"
}

KC_VERSION="${KC_VERSION:-$(kc_version)}"
[[ "$KC_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KC_VERSION must look like 26.4.7, not '$KC_VERSION'"
KC_HOME="$CACHE/keycloak-$KC_VERSION"
PID_FILE="$CACHE/keycloak.pid"
LOG_FILE="$CACHE/keycloak.log"
READY_URL="http://127.0.0.1:$KC_MGMT_PORT/health/ready"

cmd_install() {
    if [ -f "$KC_HOME/.tokenversion-installed" ] && [ -x "$KC_HOME/bin/kc.sh" ]; then
        return 0
    fi
    command -v curl >/dev/null || die "curl is required"
    command -v sha1sum >/dev/null || die "sha1sum is required"
    mkdir -p "$CACHE"
    local name="keycloak-quarkus-dist-$KC_VERSION.tar.gz"
    local url="$MAVEN_BASE/$KC_VERSION/$name"
    local tarball="$CACHE/$name"
    local expected
    expected="$(curl -fsSL --retry 3 "$url.sha1" | tr -d '[:space:]' | cut -c1-40)" \
        || die "cannot fetch $url.sha1"
    [[ "$expected" =~ ^[0-9a-f]{40}$ ]] || die "unexpected .sha1 content from $url.sha1"
    if [ ! -f "$tarball" ] || [ "$(sha1sum "$tarball" | cut -c1-40)" != "$expected" ]; then
        log "downloading $url"
        local progress=-sS
        [ -t 2 ] && progress=--progress-bar
        curl -fL --retry 3 "$progress" -o "$tarball.part" "$url" || die "download failed: $url"
        local actual
        actual="$(sha1sum "$tarball.part" | cut -c1-40)"
        if [ "$actual" != "$expected" ]; then
            rm -f "$tarball.part"
            die "SHA-1 mismatch for $name: expected $expected, got $actual"
        fi
        mv "$tarball.part" "$tarball"
    fi
    log "unpacking $name (sha1 $expected verified)"
    local tmp
    tmp="$(mktemp -d "$CACHE/unpack.XXXXXX")"
    tar -xzf "$tarball" -C "$tmp" || { rm -rf "$tmp"; die "cannot unpack $tarball"; }
    [ -x "$tmp/keycloak-$KC_VERSION/bin/kc.sh" ] || { rm -rf "$tmp"; die "unexpected archive layout"; }
    rm -rf "$KC_HOME"
    mv "$tmp/keycloak-$KC_VERSION" "$KC_HOME"
    rmdir "$tmp"
    touch "$KC_HOME/.tokenversion-installed"
    log "installed Keycloak $KC_VERSION in $KC_HOME"
}

extension_jar() {
    # the newest tokenversion-keycloak-<ver>.jar in target/, if any
    ls -t "$EXT_DIR"/target/tokenversion-keycloak-*.jar 2>/dev/null | grep -v -e '-sources\.jar$' -e '-tests\.jar$' | head -n 1 || true
}

cmd_build_extension() {
    local jar
    jar="$(extension_jar)"
    if [ -n "$jar" ] && [ -z "$(find "$EXT_DIR/src" "$EXT_DIR/pom.xml" -newer "$jar" -print -quit)" ]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn is required to build the extension"
    log "building the extension (mvn -q package in keycloak/)"
    (cd "$EXT_DIR" && mvn -q -B package) || die "extension build failed"
    jar="$(extension_jar)"
    [ -n "$jar" ] || die "build produced no JAR in $EXT_DIR/target"
}

server_pid() {
    # prints the pid if the server started by this script is alive
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

is_ready() {
    curl -fsS -o /dev/null --max-time 2 "$READY_URL" 2>/dev/null
}

cmd_status() {
    local pid
    if pid="$(server_pid)"; then
        if is_ready; then
            echo "running (pid $pid), ready: http://127.0.0.1:$KC_PORT (Keycloak $KC_VERSION)"
            return 0
        fi
        echo "running (pid $pid), not ready"
        return 1
    fi
    echo "stopped"
    return 3
}

cmd_start() {
    local keep="${KC_KEEP_DATA:-0}"
    local extra=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --keep-data) keep=1 ;;
            --fresh) keep=0 ;;
            --) shift; extra=("$@"); break ;;
            *) die "start: unknown argument '$1' (use -- before kc.sh arguments)" ;;
        esac
        shift
    done

    local pid
    if pid="$(server_pid)"; then
        if is_ready; then
            log "already running (pid $pid) and ready on http://127.0.0.1:$KC_PORT; nothing to do"
            local built
            built="$(extension_jar)"
            if [ -n "$built" ] && ! cmp -s "$built" "$KC_HOME/providers/$(basename "$built")"; then
                log "note: the built extension JAR differs from the running one; use 'restart' to load it"
            fi
            return 0
        fi
        log "a server (pid $pid) is running but not ready; waiting for it"
        wait_ready "$pid" "$(date +%s)"
        return 0
    fi
    rm -f "$PID_FILE"

    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$KC_PORT/" 2>/dev/null \
        || curl -fsS -o /dev/null --max-time 2 "$READY_URL" 2>/dev/null; then
        die "port $KC_PORT or $KC_MGMT_PORT is already answering, but not a server started by this script"
    fi

    cmd_install
    cmd_build_extension
    local jar
    jar="$(extension_jar)"
    local installed="$KC_HOME/providers/$(basename "$jar")"
    if ! cmp -s "$jar" "$installed"; then
        # a changed providers/ makes kc.sh re-augment (about +25 s); an unchanged JAR is left alone
        rm -f "$KC_HOME"/providers/tokenversion-keycloak-*.jar
        cp -p "$jar" "$installed"
    fi

    if [ "$keep" != "1" ]; then
        rm -rf "$KC_HOME/data/h2" "$KC_HOME/data/transaction-logs" "$KC_HOME/data/tmp"
    fi

    export KC_BOOTSTRAP_ADMIN_USERNAME="${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}"
    export KC_BOOTSTRAP_ADMIN_PASSWORD="${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}"
    # SPI options through the environment, not the command line, so the secret does not show in `ps`.
    if [ -n "${TOKENVERSION_EVENTS_URL:-}" ]; then
        export KC_SPI_EVENTS_LISTENER__TOKENVERSION__URL="$TOKENVERSION_EVENTS_URL"
    fi
    if [ -n "${TOKENVERSION_EVENT_SECRET:-}" ]; then
        export KC_SPI_EVENTS_LISTENER__TOKENVERSION__SECRET="$TOKENVERSION_EVENT_SECRET"
    fi

    local args=(start-dev
        --http-host=127.0.0.1 --http-port="$KC_PORT"
        --http-management-host=127.0.0.1 --http-management-port="$KC_MGMT_PORT"
        --health-enabled=true)
    if [ ${#extra[@]} -gt 0 ]; then
        args+=("${extra[@]}")
    fi

    mkdir -p "$CACHE"
    : > "$LOG_FILE"
    local t0
    t0="$(date +%s)"
    log "starting Keycloak $KC_VERSION on 127.0.0.1:$KC_PORT (management $KC_MGMT_PORT), log: $LOG_FILE"
    (cd "$KC_HOME" && exec setsid nohup bin/kc.sh "${args[@]}" >>"$LOG_FILE" 2>&1 </dev/null) &
    pid=$!
    echo "$pid" > "$PID_FILE"
    wait_ready "$pid" "$t0"
}

wait_ready() {
    local pid="$1" t0="$2" now
    while :; do
        if is_ready; then
            now="$(date +%s)"
            log "ready after $((now - t0)) s (pid $pid): http://127.0.0.1:$KC_PORT"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "keycloak.sh: Keycloak exited during startup; last log lines ($LOG_FILE):" >&2
            tail -n 60 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        now="$(date +%s)"
        if [ $((now - t0)) -ge "$KC_START_TIMEOUT" ]; then
            echo "keycloak.sh: Keycloak not ready after ${KC_START_TIMEOUT} s; last log lines ($LOG_FILE):" >&2
            tail -n 60 "$LOG_FILE" >&2 || true
            stop_pid "$pid"
            exit 1
        fi
        sleep 1
    done
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop after 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        # kc.sh forwards TERM to its java child; make sure that child goes too
        pkill -KILL -P "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
}

cmd_stop() {
    local pid
    if pid="$(server_pid)"; then
        log "stopping Keycloak (pid $pid)"
        stop_pid "$pid"
        log "stopped"
    else
        rm -f "$PID_FILE"
        log "not running"
    fi
}

main() {
    local cmd="${1:-}"
    [ $# -gt 0 ] && shift
    case "$cmd" in
        install) cmd_install ;;
        build-extension) cmd_build_extension ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start "$@" ;;
        status) cmd_status ;;
        home) echo "$KC_HOME" ;;
        logs) tail -n "${1:-100}" "$LOG_FILE" ;;
        *) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; [ -n "$cmd" ] && exit 2; exit 0 ;;
    esac
}

main "$@"
