#!/usr/bin/env sh
# The production web process (Procfile `web`): granian serving Django over WSGI.
#
# Chosen by `make bench` on a 2-core machine: granian's WSGI workers keep connections alive and
# do the HTTP work in Rust, and served the config hot path at about 3x the rate of gunicorn's
# sync workers (gthread workers were slower still and dropped connections).
# WEB_CONCURRENCY worker processes (default 2: one per core; the hot path is CPU-bound and
# answered from memory) with WEB_THREADS threads each (default 4, so that requests waiting on
# PostgreSQL, e.g. in the console, do not hold up the others).
# Prometheus counters of all workers meet in PROMETHEUS_MULTIPROC_DIR (config.metrics),
# emptied at every start so that an earlier run's counts are not added to the new ones.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
else
  PROMETHEUS_MULTIPROC_DIR=$(mktemp -d -t redline-metrics-XXXXXX)
fi
export PROMETHEUS_MULTIPROC_DIR
exec granian --interface wsgi config.wsgi:application \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-2}" --blocking-threads "${WEB_THREADS:-4}" \
  --no-ws --respawn-failed-workers --log-level "$(echo "${LOG_LEVEL:-info}" | tr 'A-Z' 'a-z')"
