#!/usr/bin/env bash
# Starts (or stops) the local PostgreSQL and Redis that development and tests use.
# Data lives under .state/; a second start reuses it. Usage: services.sh start|stop|status|running (exit 0 when both are up)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.state"
PG_DATA="$STATE/pg"
PG_PORT="${REDLINE_PG_PORT:-54329}"
REDIS_PORT="${REDLINE_REDIS_PORT:-63799}"
IS_ROOT=$([ "$(id -u)" = 0 ] && echo yes || echo no)

die() { echo "services: $*" >&2; exit 1; }

pg_bin() {
  local dir
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  return 1
}

ensure_packages() {
  local missing=()
  pg_bin >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$IS_ROOT" = yes ] && command -v apt-get >/dev/null 2>&1; then
    echo "services: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    die "missing ${missing[*]}: install with 'sudo apt-get install -y ${missing[*]}'"
  fi
}

# PostgreSQL refuses to run as root: as root, run it as the 'postgres' user.
as_pg() {
  if [ "$IS_ROOT" = yes ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  local bin; bin=$(pg_bin)
  mkdir -p "$STATE"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    mkdir -p "$PG_DATA"
    [ "$IS_ROOT" = yes ] && chown postgres:postgres "$PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -w -t 60 -l "$PG_DATA/server.log" start \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off -c max_connections=200" >/dev/null \
      || die "PostgreSQL did not start; see $PG_DATA/server.log"
  fi
  # The application role owns its tables but is no superuser, so the guard triggers bind it.
  "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE redline LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'redline')\gexec
SELECT 'CREATE DATABASE redline OWNER redline' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'redline')\gexec
SQL
  echo "services: PostgreSQL on 127.0.0.1:$PG_PORT (data in .state/pg)"
}

redis_start() {
  mkdir -p "$STATE/redis"
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "services: Redis on 127.0.0.1:$REDIS_PORT (already running)"; return
  fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "Redis did not start; see .state/redis/redis.log"
  echo "services: Redis on 127.0.0.1:$REDIS_PORT"
}

stop_all() {
  local bin
  if bin=$(pg_bin) && [ -f "$PG_DATA/PG_VERSION" ]; then
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null 2>&1 || true
  fi
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  echo "services: stopped"
}

case "${1:-start}" in
  start) ensure_packages; pg_start; redis_start ;;
  stop) stop_all ;;
  running)
    bin=$(pg_bin 2>/dev/null) && [ -f "$PG_DATA/PG_VERSION" ] \
      && as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1 \
      && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 ;;
  status)
    as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" status || true
    redis-cli -p "$REDIS_PORT" ping || true ;;
  *) die "usage: services.sh start|stop|status|running" ;;
esac
