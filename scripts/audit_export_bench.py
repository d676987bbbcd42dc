# ruff: noqa: S603, S310 (it runs its own processes and reads only from 127.0.0.1)
"""Measure the audit export at scale: GET /api/v1/audit/events as JSON Lines, and the
offboarding bundle, over N events (default 10^6) in a database of their own.

    .venv/bin/python scripts/audit_export_bench.py [--events 1000000] [--keep]

Creates the database redline_bench_audit on the server of DATABASE_URL (dropped at the end
unless --keep), migrates it, makes a tenant with an auditor, then appends N events to the
real hash chain: hashes computed here with audit.chain, rows written with COPY (the
append-only triggers refuse UPDATE, DELETE and TRUNCATE, not inserts). Then it starts one
gunicorn sync worker, streams every event through the API while sampling the worker's
resident memory, checks the count and the last hash, and writes and verifies the tenant's
bundle in this process.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "redline_bench_audit"
sys.path.insert(0, str(ROOT))


def _server_url() -> str:
    base = os.environ.get("DATABASE_URL", "postgres://redline@127.0.0.1:54329/redline")
    return base.rsplit("/", 1)[0]


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_server_url() + "/postgres", autocommit=True) as connection:
        connection.execute(sql)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def generate(count: int, tenant: str) -> float:
    """Append `count` events to the chain with COPY; returns the seconds it took."""
    from django.db import connection

    from audit.chain import ChainLink
    from audit.selectors import chain_head

    started = time.perf_counter()
    head_sequence, head_hash = chain_head()
    moment = datetime.now(UTC)
    columns = "sequence, created_at, actor, tenant, action, target, data, prev_hash, hash"
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
            prev = head_hash
            for n in range(1, count + 1):
                link = ChainLink(
                    sequence=head_sequence + n,
                    created_at=moment + timedelta(microseconds=n * 1000 + 1),
                    actor=f"user:reviewer-{n % 17}",
                    tenant=tenant,
                    action="decision.approve" if n % 3 else "profile_version.created",
                    target=f"change_request:{n}",
                    data={
                        "party": "vendor" if n % 2 else "customer",
                        "channel": "console",
                        "comment": f"benchmark event {n}",
                        "changes": {"intel.foreign_analysis": {"from": "off", "to": "full"}},
                    },
                    prev_hash=prev,
                )
                prev = link.compute_hash()
                copy.write_row(
                    (
                        link.sequence,
                        link.created_at,
                        link.actor,
                        link.tenant,
                        link.action,
                        link.target,
                        json.dumps(link.data),
                        link.prev_hash,
                        prev,
                    )
                )
    return time.perf_counter() - started


def stream(port: int, token: str, worker: int) -> dict:
    """Read every event as JSON Lines while sampling the worker's RSS."""
    peak = {"rss": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["rss"] = max(peak["rss"], _rss_kib(worker, "VmRSS"))
            time.sleep(0.05)

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/audit/events?tenant=bench",
        headers={"Accept": "application/x-ndjson", "Authorization": f"Bearer {token}"},
    )
    before = _rss_kib(worker, "VmRSS")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    lines, size, tail = 0, 0, b""
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(1 << 20):
            lines += chunk.count(b"\n")
            size += len(chunk)
            tail = (tail + chunk)[-4096:]
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "lines": lines,
        "bytes": size,
        "seconds": elapsed,
        "last": json.loads(last),
        "rss_before_kib": before,
        "rss_peak_kib": max(peak["rss"], _rss_kib(worker, "VmRSS")),
        "hwm_kib": _rss_kib(worker, "VmHWM"),
    }


def _measured(step: str, bundle: str, env: dict) -> dict:
    """Run one bundle step in a fresh process, so its peak RSS is its own."""
    output = subprocess.run(
        [sys.executable, __file__, "--step", step, bundle],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.splitlines()[-1])


def step(name: str, bundle: str) -> None:
    import django

    django.setup()
    from approvals.offboarding import tenant_bundle_write
    from audit.export import bundle_verify
    from tenants.models import Tenant

    started = time.perf_counter()
    if name == "write":
        events = tenant_bundle_write(
            tenant=Tenant.objects.get(slug="bench"), directory=Path(bundle)
        ).events
    else:
        events = bundle_verify(Path(bundle)).events
    seconds = time.perf_counter() - started
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"events": events, "seconds": seconds, "maxrss_kib": maxrss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--step", nargs=2, metavar=("STEP", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step(*args.step)
        return

    _admin(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    _admin(f"CREATE DATABASE {BENCH_DB} OWNER redline")
    env = {
        **os.environ,
        "DATABASE_URL": f"{_server_url()}/{BENCH_DB}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
    subprocess.run([*manage, "sync_catalog"], env=env, check=True, cwd=ROOT, capture_output=True)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from knox.models import AuthToken

    from audit.models import AuditEvent
    from audit.selectors import chain_head
    from tenants.models import Party, Role
    from tenants.services import membership_set, tenant_create
    from toggles.services import profile_create

    tenant = tenant_create(slug="bench", name="Benchmark")
    profile_create(tenant=tenant)
    auditor = get_user_model().objects.create_user(username="bench-auditor")
    membership_set(tenant=tenant, user=auditor, party=Party.CUSTOMER, role=Role.AUDITOR)
    _, token = AuthToken.objects.create(auditor)
    with transaction.atomic():
        seconds = generate(args.events, "bench")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_auditevent")
    head_sequence, head_hash = chain_head()
    expected = AuditEvent.objects.filter(tenant="bench").count()
    connection.close()
    print(f"generated {args.events} events in {seconds:.1f} s (chain head #{head_sequence})")

    port = _free_port()
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "600",
        ],
        env={
            **env,
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + "x" * 50,
            "SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
        },
        cwd=ROOT,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        worker = _children(server.pid)[0]
        stream(port, token, worker)  # warm-up: imports, connections
        result = stream(port, token, worker)
    finally:
        server.terminate()
        server.wait(10)
    assert result["lines"] == expected, (result["lines"], expected)
    assert (result["last"]["sequence"], result["last"]["hash"]) == (head_sequence, head_hash)
    print(
        f"API JSON Lines: {result['lines']} events, {result['bytes'] / 2**20:.0f} MiB in "
        f"{result['seconds']:.1f} s = {result['lines'] / result['seconds']:,.0f} events/s; "
        f"worker RSS {result['rss_before_kib'] / 1024:.0f} MiB before, "
        f"peak {result['rss_peak_kib'] / 1024:.0f} MiB while streaming "
        f"(VmHWM {result['hwm_kib'] / 1024:.0f} MiB)"
    )

    with tempfile.TemporaryDirectory() as scratch:
        bundle = str(Path(scratch) / "bundle")
        written = _measured("write", bundle, env)
        checked = _measured("verify", bundle, env)
        size = sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())
    print(
        f"bundle: {written['events']} events written in {written['seconds']:.1f} s = "
        f"{written['events'] / written['seconds']:,.0f} events/s, {size / 2**20:.0f} MiB, "
        f"peak RSS {written['maxrss_kib'] / 1024:.0f} MiB; verified offline in "
        f"{checked['seconds']:.1f} s = {checked['events'] / checked['seconds']:,.0f} events/s, "
        f"peak RSS {checked['maxrss_kib'] / 1024:.0f} MiB"
    )
    if not args.keep:
        _admin(f"DROP DATABASE {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
