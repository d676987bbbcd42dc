"""`make bench`: load the config hot path of the production server on loopback with wrk.

Sets up a database of its own (redline_bench) with the demo tenant and real deployment tokens,
starts the Procfile's `web` command (the production server and its settings) on a free
loopback port, and measures with wrk, in the same run and against the same server:
GET /api/v1/config and a minimal Django view returning the same bytes from memory at
concurrency 1, 16 and 64, then the 304 path and OFREP single and bulk evaluation.
Prints req/s, p50 and p99 for each and the hot path / minimal view ratio; exits non-zero
when any request failed or the ratio is under the target at concurrency 16 or 64.

Each measurement alternates its targets in short rounds, so that the load of other processes
on the machine weighs on all of them alike.

Environment: BENCH_SECONDS (per target and concurrency, default 8), BENCH_ROUNDS (default 4),
BENCH_TOKENS (default 12), BENCH_MIN_RATIO (default 0.8), BENCH_WEB (a command replacing the
Procfile's web line, to compare servers).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TARGET_RATIO = float(os.environ.get("BENCH_MIN_RATIO", "0.8"))
CONCURRENCY = (1, 16, 64)
ADMIN_DATABASE_URL = "postgres://redline@127.0.0.1:54329/redline"
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://redline@127.0.0.1:54329/redline_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:63799/2")
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
TOKENS = int(os.environ.get("BENCH_TOKENS", "12"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_recreate() -> None:
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def redis_flush() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def seed(tokens_path: str) -> None:
    """Runs in a child process with the bench environment: schema, catalog, demo, tokens."""
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from approvals.demo import demo_seed
    from tenants.models import Deployment
    from tenants.services import deployment_token_issue
    from toggles.models import Profile, VersionKind
    from toggles.services import profile_version_create

    call_command("migrate", verbosity=0)
    call_command("sync_catalog", verbosity=0)
    demo = demo_seed()
    tokens = list(demo.new_tokens.values())
    deployments = list(Deployment.objects.filter(tenant=demo.tenant))
    while len(tokens) < TOKENS:
        _, token = deployment_token_issue(deployment=deployments[len(tokens) % len(deployments)])
        tokens.append(token)
    profile_version_create(
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        changes={"usage.max_agent_steps": 10, "logging.human_review_sample_rate": 0.1},
        actor=None,
        reason="benchmark: values away from the catalog defaults",
        kind=VersionKind.TIGHTENING,
    )
    Path(tokens_path).write_text("\n".join(tokens) + "\n")


def web_command() -> str:
    if os.environ.get("BENCH_WEB"):
        return os.environ["BENCH_WEB"]
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise SystemExit("bench: the Procfile has no web line")


def http(url: str, headers: dict[str, str] | None = None, data: bytes | None = None):
    request = urllib.request.Request(url, headers=headers or {}, data=data)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.status, response.headers, response.read()


def wait_until_up(base: str, server: subprocess.Popen) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise SystemExit(f"bench: the server exited with {server.returncode}")
        try:
            if http(f"{base}/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("bench: the server did not answer /healthz within 30 s")


def wrk(url: str, concurrency: int, seconds: int, env: dict[str, str]) -> dict:
    command = [
        shutil.which("wrk") or "/usr/bin/wrk",
        f"-t{min(concurrency, 2)}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(ROOT / "scripts" / "bench.lua"),
        url,
    ]
    run = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, env={**os.environ, **env}, check=True
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def alternate(targets: list[tuple[str, dict[str, str]]], concurrency: int) -> list[dict]:
    """Run the targets in turn, ROUNDS times, so that a change of load on the machine weighs on
    all of them alike; per target: total req/s, and the median of the rounds' p50 and p99."""
    runs: list[list[dict]] = [[] for _ in targets]
    for _ in range(ROUNDS):
        for index, (url, env) in enumerate(targets):
            runs[index].append(wrk(url, concurrency, max(1, SECONDS // ROUNDS), env))
    results = []
    for target_runs in runs:
        requests = sum(run["requests"] for run in target_runs)
        seconds = sum(run["duration_us"] for run in target_runs) / 1e6
        results.append(
            {
                "rps": requests / seconds,
                "p50_us": statistics.median(run["p50_us"] for run in target_runs),
                "p99_us": statistics.median(run["p99_us"] for run in target_runs),
                "errors": sum(run["errors"] for run in target_runs),
            }
        )
    return results


def milliseconds(microseconds: int) -> str:
    return f"{microseconds / 1000:.2f} ms"


def main() -> int:
    if not shutil.which("wrk") and not Path("/usr/bin/wrk").exists():
        raise SystemExit("bench: wrk is missing: apt-get install -y wrk")
    workdir = Path(tempfile.mkdtemp(prefix="redline-bench-"))
    tokens_file = workdir / "tokens.txt"
    body_file = workdir / "config.json"
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "REDLINE_SIGNING_KEY_FILE": str(workdir / "signing-key.pem"),
        "REDLINE_SIGNING_KEY_GENERATE": "true",
        "REDLINE_DEPLOYMENT_RATE": "1000000000/s",
        "REDLINE_BENCH_VIEWS": "true",
        "REDLINE_BENCH_BODY_FILE": str(body_file),
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    print("bench: preparing the redline_bench database and the demo tokens", flush=True)
    database_recreate()
    redis_flush()
    subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--seed", str(tokens_file)], env=env, check=True, cwd=ROOT
    )
    command = web_command()
    print(f"bench: starting `{command}` on 127.0.0.1:{port}", flush=True)
    server = subprocess.Popen(  # noqa: S602 (the Procfile line, run as a shell would)
        command, shell=True, env=env, cwd=ROOT, start_new_session=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, server)
        return measure(base, tokens_file, body_file)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def measure(base: str, tokens_file: Path, body_file: Path) -> int:
    token = tokens_file.read_text().split()[0]
    auth = {"Authorization": f"Bearer {token}"}
    status, headers, body = http(f"{base}/api/v1/config", auth)
    assert status == 200, status
    body_file.write_bytes(body)
    etag = headers["ETag"]
    assert http(f"{base}/bench/minimal")[2] == body, "the minimal view must send the same bytes"
    assert http(f"{base}/ofrep/v1/evaluate/flags", auth, b"{}")[0] == 200
    print(
        f"bench: {len(body)} bytes of config (version {json.loads(body)['version']}), "
        f"{len(tokens_file.read_text().split())} tokens, {SECONDS} s per run",
        flush=True,
    )

    tokens = {"BENCH_TOKENS": str(tokens_file)}
    ofrep = {**tokens, "BENCH_METHOD": "POST", "BENCH_BODY": "{}"}
    config_url, minimal_url = f"{base}/api/v1/config", f"{base}/bench/minimal"
    for url, extra in ((config_url, tokens), (minimal_url, {})):
        wrk(url, 16, 2, extra)  # warm every worker

    rows, ratios = [], {}
    for concurrency in CONCURRENCY:
        hot, minimal, full = alternate(
            [(config_url, tokens), (minimal_url, {}), (f"{base}/bench/full-stack", {})],
            concurrency,
        )
        rows += [
            ("GET /api/v1/config", concurrency, hot),
            ("minimal view", concurrency, minimal),
            ("minimal, all middleware", concurrency, full),
        ]
        ratios[concurrency] = hot["rps"] / minimal["rps"]
    single_url = f"{base}/ofrep/v1/evaluate/flags/usage.max_agent_steps"
    for concurrency in CONCURRENCY[1:]:
        not_modified, single, bulk = alternate(
            [
                (config_url, {**tokens, "BENCH_ETAG": etag}),
                (single_url, ofrep),
                (f"{base}/ofrep/v1/evaluate/flags", ofrep),
            ],
            concurrency,
        )
        rows += [
            ("GET /api/v1/config 304", concurrency, not_modified),
            ("OFREP single flag", concurrency, single),
            ("OFREP bulk", concurrency, bulk),
        ]

    print()
    print(f"{'endpoint':<26}{'conc':>5}{'req/s':>10}{'p50':>11}{'p99':>11}{'errors':>8}")
    for name, concurrency, result in rows:
        print(
            f"{name:<26}{concurrency:>5}{result['rps']:>10.0f}{milliseconds(result['p50_us']):>11}"
            f"{milliseconds(result['p99_us']):>11}{result['errors']:>8}"
        )
    print()
    print("hot path / minimal view: " + ", ".join(f"c={c} {r:.2f}" for c, r in ratios.items()))
    errors = sum(result["errors"] for _, _, result in rows)
    short = [c for c in CONCURRENCY[1:] if ratios[c] < TARGET_RATIO]
    if errors or short:
        print(
            f"bench: FAILED: {errors} failed requests; ratio under {TARGET_RATIO} at "
            f"{', '.join(f'c={c}' for c in short) or 'no concurrency'}"
        )
        return 1
    print(f"bench: target met: ratio >= {TARGET_RATIO} at c=16 and c=64, zero errors")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        seed(sys.argv[2])
    else:
        sys.exit(main())
