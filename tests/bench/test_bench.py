"""`make bench` runs end to end: the production server from the Procfile, loaded by wrk.

Short runs, so only what does not depend on the machine's load is asserted: every row is
measured and no request failed. The throughput target itself is `make bench`'s exit status.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"),
]

ROW = re.compile(
    r"^(?P<name>.+?)\s+(?P<conc>\d+)\s+(?P<rps>\d+)\s+[\d.]+ ms\s+[\d.]+ ms\s+(?P<errors>\d+)$"
)


def test_bench__short_run__every_row_measured_without_errors():
    run = subprocess.run(  # noqa: S603 (a fixed command line)
        [sys.executable, str(ROOT / "scripts" / "bench.py")],
        env={**os.environ, "BENCH_SECONDS": "1", "BENCH_ROUNDS": "1", "BENCH_MIN_RATIO": "0"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [match.groupdict() for line in run.stdout.splitlines() if (match := ROW.match(line))]
    assert [(row["name"].strip(), int(row["conc"])) for row in rows] == [
        ("GET /api/v1/config", 1),
        ("minimal view", 1),
        ("minimal, all middleware", 1),
        ("GET /api/v1/config", 16),
        ("minimal view", 16),
        ("minimal, all middleware", 16),
        ("GET /api/v1/config", 64),
        ("minimal view", 64),
        ("minimal, all middleware", 64),
        ("GET /api/v1/config 304", 16),
        ("OFREP single flag", 16),
        ("OFREP bulk", 16),
        ("GET /api/v1/config 304", 64),
        ("OFREP single flag", 64),
        ("OFREP bulk", 64),
    ]
    assert all(int(row["rps"]) > 0 and row["errors"] == "0" for row in rows)
    assert re.search(
        r"^hot path / minimal view: c=1 [\d.]+, c=16 [\d.]+, c=64 [\d.]+$", run.stdout, re.MULTILINE
    )
