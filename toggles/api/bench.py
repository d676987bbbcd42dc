"""`make bench` only: the config bytes from memory with nothing else, the yardstick of the hot path.

Routed at /bench/minimal only when REDLINE_BENCH_VIEWS is on; it serves the file named by the
environment variable REDLINE_BENCH_BODY_FILE.
"""

import os
from functools import cache

from django.http import HttpResponse


@cache
def _body() -> bytes:
    with open(os.environ["REDLINE_BENCH_BODY_FILE"], "rb") as handle:
        return handle.read()


def minimal_view(request):
    return HttpResponse(_body(), content_type="application/json")
