#!/usr/bin/env bash
# `make run`: local servers, schema, catalog and demo data, then web + worker + beat.
# Ctrl-C stops the processes and the servers this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

if scripts/services.sh running; then started_servers=no; else started_servers=yes; fi
scripts/services.sh start
if [ "$started_servers" = yes ]; then trap 'scripts/services.sh stop' EXIT; fi

$PY manage.py migrate --no-input -v 0
$PY manage.py sync_catalog
$PY manage.py seed_demo
echo
echo "Redline is starting: console and API at http://127.0.0.1:${REDLINE_WEB_PORT:-8000}/ (Ctrl-C stops everything)"
echo
.venv/bin/honcho -f Procfile.dev start
