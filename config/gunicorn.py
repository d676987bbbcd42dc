"""gunicorn settings for the web process (Procfile: gunicorn -c config/gunicorn.py config.wsgi).

Bind address and worker count come from PORT and WEB_CONCURRENCY. Prometheus counters are
kept per worker in PROMETHEUS_MULTIPROC_DIR (a fresh temporary directory unless set), added
up at every scrape of /metrics; a dead worker's files are marked so its gauges go away.
Logs are JSON through Django's LOGGING; gunicorn's own access log stays off because the
Django middleware logs each request with its request id and without secrets in its path.
"""

import os
import shutil
import tempfile
from pathlib import Path

from config.logging import logging_settings

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"
max_requests = 10000
max_requests_jitter = 1000
accesslog = None
logconfig_dict = logging_settings(
    level=os.environ.get("LOG_LEVEL", "INFO"), renderer=os.environ.get("LOG_FORMAT", "json")
)
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="redline-metrics-")
)


def on_starting(server):
    """Counts left by an earlier run of this directory would be added to the new ones."""
    directory = Path(_metrics_dir)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
