"""Settings for the test suite: the real local PostgreSQL and Redis, a Redis db of its own."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault(
    "REDIS_URL", f"redis://127.0.0.1:{os.environ.get('REDLINE_REDIS_PORT', '63799')}/1"
)

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
# A config signing key of the test run's own, never the development key under .state/.
REDLINE_SIGNING_KEY_FILE = Path(tempfile.mkdtemp(prefix="redline-test-keys-")) / "signing-key.pem"
REDLINE_SIGNING_KEY_GENERATE = True
# Separate checkouts or CI jobs on one server can each name their own test database.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("REDLINE_TEST_DATABASE", "test_redline")}  # noqa: F405
# The flush between transactional tests lifts the TRUNCATE guards (tests/postgresql).
DATABASES["default"]["ENGINE"] = "tests.postgresql"  # noqa: F405
