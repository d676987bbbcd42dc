"""Structured logs: one JSON object per line (structlog), with the id of the request behind it.

* Our code, Django, Celery and gunicorn all log through the standard library; one
  structlog formatter renders every record as JSON with its time, level, logger, and the
  context bound for the request or task (request_id, task, task_id).
* RequestIdMiddleware takes X-Request-ID from the request when it is sane, or makes one,
  binds it for the request's logs, sends it back in the response, and logs one
  `request.finished` line per request (REDLINE_ACCESS_LOG; successful config fetches and
  probes excepted: /metrics counts those).
* Celery signals carry the id into every task queued while it is bound (a message header),
  and bind it again in the worker, so a task's own tasks carry it too. A task that no
  request queued (beat) uses its task id as its request id.
* Secrets never reach the output: `redact` masks values under sensitive keys and, inside any
  text, bearer tokens, deployment tokens, review-link tokens and secret query parameters.
"""

import logging
import re
import time
import uuid

import structlog
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

REQUEST_ID_HEADER = "X-Request-ID"
TASK_HEADER = "redline_request_id"
REDACTED = "[redacted]"
# Paths whose successful answers get no access log line: the config hot path (counted in
# /metrics instead) and the probes. Their failures are still logged.
QUIET_WHEN_OK = ("/api/v1/config", "/ofrep/v1/", "/metrics", "/healthz", "/readyz")
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SENSITIVE_KEY = re.compile(
    r"pass(word)?|secret|token|authorization|cookie|session|csrf|signature|private|api_?key",
    re.IGNORECASE,
)
_SECRETS_IN_TEXT = [
    # Authorization headers and their like: Bearer <token>, Token <token>
    (re.compile(r"(?i)\b(bearer|token)(\s+|=)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{REDACTED}"),
    # Deployment tokens (tenants.tokens): rl_ and 43 URL-safe characters
    (re.compile(r"\brl_[A-Za-z0-9_-]{16,}"), f"rl_{REDACTED}"),
    # Review links: /review/<selector>.<signature>/
    (re.compile(r"/review/[^/\s\"'?#]+"), f"/review/{REDACTED}"),
    # Secrets in query strings and form bodies
    (
        re.compile(r"(?i)\b(password|passwd|secret|token|api_?key|sig|signature)=[^&\s\"']+"),
        rf"\1={REDACTED}",
    ),
]
_log = structlog.get_logger("redline")


def redact_text(text: str) -> str:
    for pattern, replacement in _SECRETS_IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value):
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if _SENSITIVE_KEY.search(str(k)) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact(logger, method_name: str, event_dict: dict) -> dict:
    """structlog processor: nothing secret leaves, whoever logged it."""
    return {
        key: REDACTED if _SENSITIVE_KEY.search(key) and key != "event" else _redact_value(value)
        for key, value in event_dict.items()
    }


_PRE_CHAIN = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_settings(*, level: str, renderer: str = "json") -> dict:
    """Configure structlog and return the LOGGING dict that routes every record through it."""
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            *_PRE_CHAIN,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    render = (
        structlog.dev.ConsoleRenderer(colors=False)
        if renderer == "console"
        else structlog.processors.JSONRenderer()
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": _PRE_CHAIN,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    redact,
                    render,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Replace the handlers Django's own default logging gave these (plain text).
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": [], "level": level, "propagate": True},
            "axes": {"level": "WARNING"},
            "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


class RequestIdMiddleware:
    """Outermost middleware: the request id for logs and tasks, and the access log line."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.access_log = settings.REDLINE_ACCESS_LOG

    def __call__(self, request):
        request_id = request.headers.get(REQUEST_ID_HEADER, "")
        if not _SANE_REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        clear_contextvars()
        bind_contextvars(request_id=request_id)
        request.request_id = request_id
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        quiet = response.status_code < 400 and request.path.startswith(QUIET_WHEN_OK)
        if self.access_log and not quiet:
            _log.info(
                "request.finished",
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                user=getattr(getattr(request, "user", None), "pk", None),
            )
        return response


# Celery ------------------------------------------------------------------------------------


@setup_logging.connect
def _celery_keeps_django_logging(**kwargs) -> None:
    """Celery leaves logging alone: Django's LOGGING (above) already set it up."""


@before_task_publish.connect
def _carry_request_id(headers=None, **kwargs) -> None:
    request_id = get_contextvars().get("request_id")
    if request_id and headers is not None:
        headers[TASK_HEADER] = request_id


@task_prerun.connect
def _bind_task_context(task_id=None, task=None, **kwargs) -> None:
    clear_contextvars()
    request_id = getattr(task.request, TASK_HEADER, None) or task_id
    bind_contextvars(request_id=request_id, task=task.name, task_id=task_id)
    task.request.redline_started = time.perf_counter()


@task_postrun.connect
def _log_task_end(task_id=None, task=None, state=None, **kwargs) -> None:
    started = getattr(task.request, "redline_started", None)
    _log.info(
        "task.finished",
        state=state,
        duration_ms=round((time.perf_counter() - started) * 1000, 2) if started else None,
    )
    clear_contextvars()
