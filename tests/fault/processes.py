# ruff: noqa: S603, S607 (it starts fixed programs of this machine, for the test run only)
"""Real processes for the rollout fault tests and benchmark: a Redis server of their own,
Celery workers, a web server and one-off app commands, all on the test database."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from toggles.signing import keyring

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server of the test's own on a free port, so a restart disturbs no one else."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(self._answers(client), timeout=10, what="redis-server")
        return self

    @staticmethod
    def _answers(client):
        def ping():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        return ping

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def app_environment(redis_url: str, **overrides: object) -> dict[str, str]:
    """What a web, worker or command process needs to run on the test database."""
    db = connection.settings_dict
    host = db["HOST"] or "127.0.0.1"
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    pem = Path(settings.REDLINE_SIGNING_KEY_FILE)
    keyring()  # the test run's key exists from here on
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{credentials}@{host}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "REDLINE_SIGNING_KEY": pem.read_text(),
        "LOG_LEVEL": "INFO",
    }
    env.update({name: str(value) for name, value in overrides.items()})
    return env


class Worker:
    """`celery -A config worker` (with beat when asked) in a process group of its own."""

    def __init__(self, env: dict[str, str], log: Path, *, concurrency: int = 2, beat=True):
        self.env, self.log, self.concurrency, self.beat = env, log, concurrency, beat
        self.process: subprocess.Popen | None = None

    def start(self) -> "Worker":
        command = [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(self.concurrency),
            "--pool",
            "prefork",
            "--hostname",
            f"rollout-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        if self.beat:
            command += ["--beat", "--schedule", str(self.log.with_suffix(".beat"))]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 30) -> "Worker":
        wait_until(lambda: b" ready." in self.log.read_bytes(), timeout=timeout, what="worker")
        return self

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes, as a lost machine would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


class WebServer:
    """gunicorn serving the app on a free port."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "WebServer":
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def listening():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, timeout=20, what="gunicorn")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)


WRITE_VERSIONS = """
import django
django.setup()
from toggles.models import Profile, VersionKind
from toggles.services import profile_version_create
profile = Profile.objects.get(tenant__slug={tenant!r}, name="default")
for limit in {limits!r}:
    profile_version_create(
        profile=profile,
        changes={{"usage.rate_limit_per_minute": limit}},
        actor=None,
        reason="fault test",
        kind=VersionKind.CHANGE_REQUEST if limit > 600 else VersionKind.TIGHTENING,
    )
"""


def write_versions(env: dict[str, str], *, tenant: str, limits: list[int]) -> None:
    """Write one version per limit, each in its own transaction, from a process of its own.

    Limits above the default 600 loosen, so the rollout goes to canaries first."""
    subprocess.run(
        [sys.executable, "-c", WRITE_VERSIONS.format(tenant=tenant, limits=limits)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )
