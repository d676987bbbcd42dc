"""A real HTTP server standing in for the webhook endpoints of many deployments.

One aiohttp server in a thread of its own; each deployment gets its own path. It applies a
config the first time it sees an idempotency key, as a well-behaved deployment does, and
keeps every request so tests can check what arrived, in which order and how often. It does
not refuse older versions, so an ordering fault of the sender would show.
"""

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass

from aiohttp import web

TIMEOUT = "timeout"


@dataclass(frozen=True)
class Received:
    path: str
    key: str
    version: int
    signature: str
    body: bytes
    answer: int | str


class WebhookReceiver:
    def __init__(self, *, delay: float = 0.0, hang_seconds: float = 3.0):
        self.delay = delay
        self.hang_seconds = hang_seconds
        self.arrived: list[str] = []
        self.received: list[Received] = []
        self.applied: dict[str, list[int]] = defaultdict(list)
        self._applied_keys: set[str] = set()
        self._scripts: dict[str, list[int | str]] = {}
        self._down: dict[str, int] = {}
        self._slow: dict[str, float] = {}
        self._lock = threading.Lock()
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def script(self, path: str, answers: list[int | str]) -> None:
        """Answer the next requests to `path` with these statuses (or TIMEOUT), then 200."""
        self._scripts[path] = list(answers)

    def down(self, path: str, status: int = 500) -> None:
        """Answer every request to `path` with `status` until `up` is called."""
        self._down[path] = status

    def slow(self, path: str, seconds: float) -> None:
        """Take this long over the next request to `path` (then answer and apply as usual)."""
        self._slow[path] = seconds

    def up(self, path: str) -> None:
        self._down.pop(path, None)

    def keys(self, path: str) -> dict[str, int]:
        """Idempotency key -> number of requests that carried it."""
        counts: dict[str, int] = defaultdict(int)
        for request in self.received:
            if request.path == path:
                counts[request.key] += 1
        return dict(counts)

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        self.arrived.append(path)
        delay = self._slow.pop(path, self.delay)
        if delay:
            await asyncio.sleep(delay)
        with self._lock:
            script = self._scripts.get(path)
            answer: int | str = script.pop(0) if script else self._down.get(path, 200)
            received = Received(
                path=path,
                key=request.headers.get("Idempotency-Key", ""),
                version=int(request.headers.get("Config-Version", "0")),
                signature=request.headers.get("Config-Signature", ""),
                body=body,
                answer=answer,
            )
            self.received.append(received)
            if answer == 200 and received.key not in self._applied_keys:
                self._applied_keys.add(received.key)
                self.applied[path].append(received.version)
        if answer == TIMEOUT:
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504)
        headers = {"Retry-After": "30"} if answer == 429 else {}
        text = "ok" if answer == 200 else f"refused {answer}"
        return web.Response(status=answer, text=text, headers=headers)

    def start(self) -> "WebhookReceiver":
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/{path:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
