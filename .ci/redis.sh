#!/usr/bin/env bash
# Start (default) or stop a throwaway redis-server for the worker tests.
#
#   .ci/redis.sh [start]   install Debian redis-server if missing, start it daemonized on
#                          127.0.0.1:$RUNTIME_REDIS_PORT (default 6390), no persistence
#   .ci/redis.sh stop      stop the server started above (pidfile under /tmp)
#
# Prints the URL to use (RUNTIME_TEST_REDIS_URL) on success.
set -euo pipefail

PORT="${RUNTIME_REDIS_PORT:-6390}"
PIDFILE="/tmp/agent-runtime-redis-${PORT}.pid"
LOGFILE="/tmp/agent-runtime-redis-${PORT}.log"
ACTION="${1:-start}"

ensure_installed() {
    if command -v redis-server >/dev/null 2>&1; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
    echo "redis.sh: installing redis-server (Debian package)" >&2
    # stdout is reserved for the URL (callers capture it): apt's chatter goes to stderr.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2
}

is_running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    ensure_installed
    if is_running; then
        echo "redis://127.0.0.1:${PORT}/0"
        return 0
    fi
    # No persistence: nothing under /var/lib/redis is touched, every start is empty.
    redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes --pidfile "$PIDFILE" \
        --save "" --appendonly no --dir /tmp --logfile "$LOGFILE" --protected-mode yes >&2
    for _ in $(seq 1 50); do
        if redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG; then
            echo "redis://127.0.0.1:${PORT}/0"
            return 0
        fi
        sleep 0.1
    done
    echo "redis.sh: redis-server did not answer on 127.0.0.1:${PORT} (log: ${LOGFILE})" >&2
    return 1
}

stop() {
    if ! is_running; then
        rm -f "$PIDFILE"
        return 0
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    kill "$pid"
    for _ in $(seq 1 50); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PIDFILE"
            return 0
        fi
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

case "$ACTION" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
