#!/usr/bin/env bash
# `make run`: local servers, schema, catalog and demo data, then web + worker + beat, and a
# local mail catcher that keeps every mail for the outbox page (no outside mail server).
# Ctrl-C stops the processes and the servers this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export REDLINE_DEV_MAIL_PORT="${REDLINE_DEV_MAIL_PORT:-10025}"
export EMAIL_URL="${EMAIL_URL:-smtp://127.0.0.1:$REDLINE_DEV_MAIL_PORT}"

if scripts/services.sh running; then started_servers=no; else started_servers=yes; fi
scripts/services.sh start
if [ "$started_servers" = yes ]; then trap 'scripts/services.sh stop' EXIT; fi

$PY manage.py migrate --no-input -v 0
$PY manage.py sync_catalog
$PY manage.py seed_demo
echo
echo "Redline is starting: console and API at http://127.0.0.1:${REDLINE_WEB_PORT:-8000}/ (Ctrl-C stops everything)"
echo "Mail (review links, outcomes) is caught locally: http://127.0.0.1:${REDLINE_WEB_PORT:-8000}/dev/outbox/"
echo
# Honcho runs in a session of its own, so Ctrl-C reaches the processes once, through honcho
# (SIGTERM), and the Celery worker finishes the task in hand instead of being cut off.
setsid .venv/bin/honcho -f Procfile.dev start &
honcho=$!
trap 'stopping=yes; kill -TERM "$honcho" 2>/dev/null || true' INT TERM HUP
stopping=no
wait "$honcho" || wait "$honcho" || [ "$stopping" = yes ]
