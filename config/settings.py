"""Redline settings, read from the environment (12-factor).

Development defaults point at the local PostgreSQL and Redis that `make run` starts.
With DEBUG off the process refuses to start on a default or missing SECRET_KEY.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = BASE_DIR / ".state"

DEVELOPMENT_SECRET_KEY = "redline-development-only-secret-key-never-use-in-production"  # noqa: S105

env = environ.Env()
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == DEVELOPMENT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random value when DEBUG is off "
        "(e.g. SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))'))"
    )
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "csp",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "guardian",
    "audit",
    "tenants",
    "toggles",
    "approvals",
]

MIDDLEWARE = [
    "config.logging.RequestIdMiddleware",
    "config.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The ports of the local servers scripts/services.sh starts (it reads the same variables).
LOCAL_PG_PORT = env.int("REDLINE_PG_PORT", default=54329)
LOCAL_REDIS_PORT = env.int("REDLINE_REDIS_PORT", default=63799)

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"postgres://redline@127.0.0.1:{LOCAL_PG_PORT}/redline"
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default=f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "redline",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
GUARDIAN_RAISE_403 = False
GUARDIAN_RENDER_403 = False
ANONYMOUS_USER_NAME = None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "login"

# Brute-force protection for the console login (django-axes): lock a user+address pair.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "console/locked_out.html"

# Content security policy: everything from our own origin, nothing inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}
# Development serves static files from their apps; production serves collectstatic's output.
STATIC_ROOT = env.str("STATIC_ROOT", default="" if DEBUG else str(BASE_DIR / "staticfiles")) or None


def _mailer_from_url(url: str) -> dict:
    """MAILERS entry from EMAIL_URL (smtp://user:pass@host:port, smtp+tls://…, consolemail://)."""
    parsed = environ.Env.email_url_config(url)
    options = {
        "host": parsed.get("EMAIL_HOST") or None,
        "port": parsed.get("EMAIL_PORT") or None,
        "username": parsed.get("EMAIL_HOST_USER") or None,
        "password": parsed.get("EMAIL_HOST_PASSWORD") or None,
        "use_tls": parsed.get("EMAIL_USE_TLS", False),
        "use_ssl": parsed.get("EMAIL_USE_SSL", False),
        "timeout": env.int("EMAIL_TIMEOUT", default=10),
    }
    backend = parsed["EMAIL_BACKEND"]
    if not backend.endswith("smtp.EmailBackend"):
        options = {}
    return {"BACKEND": backend, "OPTIONS": {k: v for k, v in options.items() if v is not None}}


# Development prints mail to the console; production defaults to a local SMTP relay.
MAILERS = {
    "default": _mailer_from_url(
        env.str("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
    )
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Redline <redline@localhost>")
SITE_URL = env.str(
    "SITE_URL", default=f"http://127.0.0.1:{env.int('REDLINE_WEB_PORT', default=8000)}"
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Redline API",
    "DESCRIPTION": "Two-party control plane for the safety settings of AI model deployments.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "VersionKindEnum": "toggles.models.VersionKind",
        "RequestKindEnum": "approvals.models.RequestKind",
    },
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "sweep-change-requests": {
        "task": "approvals.tasks.sweep_change_requests",
        "schedule": env.float("REDLINE_SWEEP_SECONDS", default=30.0),
    },
}

REDLINE_CATALOG_PATH = env.path(
    "REDLINE_CATALOG_PATH", default=str(BASE_DIR / "toggles" / "catalog.toml")
)
REDLINE_DEMO_PASSWORD = env.str("REDLINE_DEMO_PASSWORD", default="redline-demo-2026")

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int(
        "SECURE_HSTS_SECONDS", default=int(timedelta(days=365).total_seconds())
    )
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)


# The lowest quorum per party, by risk tier, that no tenant policy can go below.
REDLINE_QUORUM_FLOOR = {
    "low": env.int("REDLINE_QUORUM_FLOOR_LOW", default=1),
    "high": env.int("REDLINE_QUORUM_FLOOR_HIGH", default=1),
    "critical": env.int("REDLINE_QUORUM_FLOOR_CRITICAL", default=2),
}

# Personal API tokens for scripts (hashed at rest, expiring): `manage.py issue_api_token`.
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=90)),
    "AUTO_REFRESH": False,
}
AXES_VERBOSE = False

# Rollout of new profile versions to deployments (toggles.rollout).
REDLINE_ROLLOUT_TIMEOUT_SECONDS = env.float("REDLINE_ROLLOUT_TIMEOUT_SECONDS", default=5.0)
REDLINE_ROLLOUT_MAX_ATTEMPTS = env.int("REDLINE_ROLLOUT_MAX_ATTEMPTS", default=8)
REDLINE_ROLLOUT_BACKOFF_SECONDS = env.float("REDLINE_ROLLOUT_BACKOFF_SECONDS", default=2.0)
REDLINE_ROLLOUT_BACKOFF_MAX_SECONDS = env.float(
    "REDLINE_ROLLOUT_BACKOFF_MAX_SECONDS", default=300.0
)
REDLINE_ROLLOUT_SOAK_SECONDS = env.float("REDLINE_ROLLOUT_SOAK_SECONDS", default=0.0)
REDLINE_ROLLOUT_STUCK_SECONDS = env.float("REDLINE_ROLLOUT_STUCK_SECONDS", default=60.0)
REDLINE_ROLLOUT_PULL_DEADLINE_SECONDS = env.float(
    "REDLINE_ROLLOUT_PULL_DEADLINE_SECONDS", default=3600.0
)
CELERY_BEAT_SCHEDULE["reconcile-rollouts"] = {
    "task": "toggles.tasks.rollouts_reconcile",
    "schedule": env.float("REDLINE_ROLLOUT_RECONCILE_SECONDS", default=30.0),
}

# Config API for deployments (toggles.api, toggles.ofrep, toggles.serving).
# Ed25519 key that signs config documents: PEM text in REDLINE_SIGNING_KEY, or the file
# REDLINE_SIGNING_KEY_FILE (generated when missing if REDLINE_SIGNING_KEY_GENERATE, the
# development default). REDLINE_SIGNING_PUBLISHED_KEYS: PEM files of earlier keys still listed.
REDLINE_SIGNING_KEY = env.str("REDLINE_SIGNING_KEY", default="")
REDLINE_SIGNING_KEY_FILE = env.path(
    "REDLINE_SIGNING_KEY_FILE", default=str(STATE_DIR / "signing-key.pem")
)
REDLINE_SIGNING_KEY_GENERATE = env.bool("REDLINE_SIGNING_KEY_GENERATE", default=DEBUG)
REDLINE_SIGNING_PUBLISHED_KEYS = env.list("REDLINE_SIGNING_PUBLISHED_KEYS", default=[])
# How often a process asks Redis whether what it serves changed, and at most how long it keeps
# a token's binding without asking PostgreSQL again.
REDLINE_CONFIG_RECHECK_SECONDS = env.float("REDLINE_CONFIG_RECHECK_SECONDS", default=1.0)
REDLINE_CONFIG_REVALIDATE_SECONDS = env.float("REDLINE_CONFIG_REVALIDATE_SECONDS", default=30.0)
REDLINE_CONFIG_CACHE_SIZE = env.int("REDLINE_CONFIG_CACHE_SIZE", default=1024)
# Requests per deployment token; a process adds its count to Redis every sync interval.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "deployment": env.str("REDLINE_DEPLOYMENT_RATE", default="3000/min"),
}
REDLINE_THROTTLE_SYNC_SECONDS = env.float("REDLINE_THROTTLE_SYNC_SECONDS", default=0.5)
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "toggles.api.schema.document_plain_views",
]
# `make bench` only: /bench/minimal serves the bytes of REDLINE_BENCH_BODY_FILE from memory.
REDLINE_BENCH_VIEWS = env.bool("REDLINE_BENCH_VIEWS", default=False)
# The config hot path skips the console's middleware (toggles.api.middleware).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "toggles.api.middleware.DeploymentApiMiddleware",
)

# Review links in mail (approvals.review_links). Failed attempts (unknown or tampered links,
# wrong passwords) allowed per client, and wrong passwords per reviewer, within the window;
# past them the review pages answer 429. The client is REMOTE_ADDR, or the request header a
# trusted proxy sets, named as in request.META (e.g. HTTP_X_REAL_IP).
REDLINE_REVIEW_FAILURE_LIMIT = env.int("REDLINE_REVIEW_FAILURE_LIMIT", default=20)
REDLINE_REVIEW_PASSWORD_LIMIT = env.int("REDLINE_REVIEW_PASSWORD_LIMIT", default=5)
REDLINE_REVIEW_FAILURE_WINDOW_SECONDS = env.int(
    "REDLINE_REVIEW_FAILURE_WINDOW_SECONDS", default=900
)
REDLINE_CLIENT_IP_META = env.str("REDLINE_CLIENT_IP_META", default="REMOTE_ADDR")
# Development mail: `manage.py mailcatcher` (started by `make run`) keeps each message here,
# and with DEBUG on, /dev/outbox/ lists and shows them.
REDLINE_DEV_MAILBOX = env.path("REDLINE_DEV_MAILBOX", default=str(STATE_DIR / "mail"))
REDLINE_DEV_MAIL_PORT = env.int("REDLINE_DEV_MAIL_PORT", default=10025)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] |= {
    "RolloutStatusEnum": "toggles.models.RolloutStatus",
    "RolloutTargetStatusEnum": "toggles.models.TargetStatus",
    "RequestStatusEnum": "approvals.models.RequestStatus",
}

# Operations (config.logging, config.metrics). Logs: one JSON object per line on stderr
# (LOG_FORMAT=console for people), with the request id that follows a request into its Celery
# tasks; secrets are masked. REDLINE_ACCESS_LOG: a line per request. /metrics answers only with
# `Authorization: Bearer $METRICS_TOKEN` (unset: off). With several web worker processes, set
# PROMETHEUS_MULTIPROC_DIR (scripts/web.sh does) so every worker's counts are added up.
from config.logging import logging_settings  # noqa: E402

LOGGING = logging_settings(
    level=env.str("LOG_LEVEL", default="INFO"), renderer=env.str("LOG_FORMAT", default="json")
)
REDLINE_ACCESS_LOG = env.bool("REDLINE_ACCESS_LOG", default=True)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Audit webhook to a SIEM (audit.webhooks): every audit event, in order, as signed JSON Lines.
REDLINE_AUDIT_WEBHOOK_URL = env.str("REDLINE_AUDIT_WEBHOOK_URL", default="")
REDLINE_AUDIT_WEBHOOK_BATCH = env.int("REDLINE_AUDIT_WEBHOOK_BATCH", default=500)
REDLINE_AUDIT_WEBHOOK_TIMEOUT_SECONDS = env.float(
    "REDLINE_AUDIT_WEBHOOK_TIMEOUT_SECONDS", default=5.0
)
REDLINE_AUDIT_WEBHOOK_BACKOFF_SECONDS = env.float(
    "REDLINE_AUDIT_WEBHOOK_BACKOFF_SECONDS", default=2.0
)
REDLINE_AUDIT_WEBHOOK_BACKOFF_MAX_SECONDS = env.float(
    "REDLINE_AUDIT_WEBHOOK_BACKOFF_MAX_SECONDS", default=300.0
)
CELERY_BEAT_SCHEDULE["forward-audit-events"] = {
    "task": "audit.tasks.audit_webhook_forward_task",
    "schedule": env.float("REDLINE_AUDIT_WEBHOOK_SECONDS", default=5.0),
}
# Where the console writes offboarding export bundles (approvals.offboarding).
REDLINE_EXPORT_DIR = env.path("REDLINE_EXPORT_DIR", default=str(STATE_DIR / "exports"))
