"""Shared pieces of the benchmarks: timing, machine load, JSON output, a small server that speaks
the app's own routes (web/, onnxruntime-web, /msam/models, /msam/embedding) for the browser
benchmarks, and headless Chromium.

Benchmarks are scripts, never tests: nothing here is imported by the test suite; what the two share
(Chromium, free ports, mask IoU, the app process, the goldens) is tests/support.py.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):  # the repository, and tests/support.py (shared with the tests)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from support import CHROMIUM, CHROMIUM_ARGS, chromium, chromium_profile, free_port, mask_iou  # noqa: E402,F401

SAMPLES = [ROOT / "examples", ROOT.parent / "shared" / "samples"]
GOLDEN = ROOT.parent / "shared" / "golden"
BENCH_WEB = Path(__file__).resolve().parent / "web"


# --------------------------------------------------------------------------- reporting

def machine() -> dict:
    """CPU count, load average and the accelerations this CPU offers (for the record)."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "loadavg": load,
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


def cpu_model() -> str:
    """The CPU's model name (as lscpu prints it), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def emit(result: dict, as_json: bool, lines: List[str]) -> None:
    """Print one JSON object (--json) or the human-readable lines."""
    if as_json:
        print(json.dumps(result, sort_keys=False))
    else:
        print("\n".join(lines))


def median(values: List[float]) -> float:
    return float(statistics.median(values))


def time_interleaved(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds per call of each function, calls interleaved (a, b, a, b, ...) so that a change of the
    machine's load during the run hits both alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def find_sample(name: str) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    for folder in SAMPLES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no image {name!r} (looked in {[str(s) for s in SAMPLES]})")


class BenchServer:
    """The app's routes (mobilesam_app.server.make_routes: /web/*, /web/ort/*, /msam/models/*,
    /msam/embedding/*) and the isolation headers, plus /bench/* (bench/web/), served by uvicorn in a
    thread. `models` maps file names to paths; `embeddings` maps (model, image id) to float16 bytes
    (served in the format asked for, as the app does)."""

    def __init__(self) -> None:
        self.models: Dict[str, Path] = {}
        self.embeddings: Dict[tuple, bytes] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: Optional[threading.Thread] = None

    def _embedding_bytes(self, model: str, image_id: str, fmt: str) -> Optional[bytes]:
        from mobilesam_app.embedding_codec import transcode

        data = self.embeddings.get((model, image_id))
        return None if data is None else transcode(data, fmt)

    def __enter__(self) -> "BenchServer":
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import FileResponse, PlainTextResponse
        from starlette.routing import Route

        from mobilesam_app import server as app_server

        if not app_server.ORT_DIST.is_dir():
            raise SystemExit(f"onnxruntime-web is not installed ({app_server.ORT_DIST} is missing): run `npm ci` in web/")

        def bench_file(request):
            name = request.path_params["name"]
            path = BENCH_WEB / name
            if not app_server.SAFE_NAME.match(name) or not path.is_file():
                return PlainTextResponse("not found", status_code=404)
            media = {".html": "text/html", ".js": "text/javascript"}.get(path.suffix, "application/octet-stream")
            return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})

        routes = app_server.make_routes(lambda: self.models, self._embedding_bytes, lambda image_id: None)
        routes.append(Route("/bench/{name}", bench_file))
        app = Starlette(routes=routes, middleware=app_server.middleware())
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 30
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.05)
        app_server.ORT_FILES.wait_compressed(600)  # every page gets the runtime as the app serves it
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


NETWORK = {"down_mbps": 20.0, "up_mbps": 5.0, "rtt_ms": 60.0}


class NetLog:
    """What one page's DevTools Network domains saw, its own and its dedicated workers' (the decoder
    worker imports onnxruntime-web; a worker's requests are throttled with its page's but reported to
    the worker's target only): per request its URL, the bytes on the wire (`encodedDataLength`:
    headers and body as transferred, 0 from the HTTP cache) and whether it came from the cache."""

    HANDLERS = ("requestWillBeSent", "responseReceived", "requestServedFromCache", "loadingFinished")

    def __init__(self, cdp) -> None:
        self.requests: Dict[str, dict] = {}
        self._cdp = cdp
        self._ids = iter(range(1, 1 << 30))
        self._handlers = {"Network." + name: getattr(self, "_" + name) for name in self.HANDLERS}
        for method, handler in self._handlers.items():
            cdp.on(method, handler)
        cdp.on("Target.attachedToTarget", self._attached)
        cdp.on("Target.receivedMessageFromTarget", self._from_target)

    def attach_workers(self) -> None:
        """Log the requests of the page's workers too (they wait for this log to attach)."""
        self._cdp.send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": False})

    def _to_target(self, session_id: str, method: str) -> None:
        message = json.dumps({"id": next(self._ids), "method": method, "params": {}})
        self._cdp.send("Target.sendMessageToTarget", {"sessionId": session_id, "message": message})

    def _attached(self, event) -> None:
        session_id = event["sessionId"]
        if event["targetInfo"].get("type") == "worker":
            self._to_target(session_id, "Network.enable")
        self._to_target(session_id, "Runtime.runIfWaitingForDebugger")

    def _from_target(self, event) -> None:
        message = json.loads(event["message"])
        handler = self._handlers.get(message.get("method"))
        if handler is not None:
            handler(message["params"])

    def _entry(self, event) -> dict:
        return self.requests.setdefault(event["requestId"], {"url": "", "bytes": 0, "cached": False, "done": False})

    def _requestWillBeSent(self, event) -> None:
        self._entry(event)["url"] = event["request"]["url"]

    def _responseReceived(self, event) -> None:
        entry = self._entry(event)
        entry["url"] = event["response"]["url"]
        entry["cached"] |= bool(event["response"].get("fromDiskCache") or event["response"].get("fromPrefetchCache"))

    def _requestServedFromCache(self, event) -> None:
        self._entry(event)["cached"] = True

    def _loadingFinished(self, event) -> None:
        entry = self._entry(event)
        entry["bytes"] += int(event.get("encodedDataLength", 0))
        entry["done"] = True

    def matching(self, part: str) -> List[dict]:
        """The requests whose URL path (not its query) contains `part`."""
        from urllib.parse import urlsplit

        return [r for r in self.requests.values() if part in urlsplit(r["url"]).path]

    def wire_bytes(self, part: str = "") -> int:
        """Bytes transferred for the requests whose URL contains `part` (all with "")."""
        return sum(r["bytes"] for r in self.matching(part))


def emulate_network(context, page, down_mbps: float = NETWORK["down_mbps"], up_mbps: float = NETWORK["up_mbps"],
                    rtt_ms: float = NETWORK["rtt_ms"]) -> NetLog:
    """Throttle `page` (Network.emulateNetworkConditions: `rtt_ms` of latency per request, the
    throughputs in Mbit/s) and log its requests; call before the page navigates."""
    cdp = context.new_cdp_session(page)
    log = NetLog(cdp)
    log.attach_workers()
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": rtt_ms,
        "downloadThroughput": down_mbps * 1e6 / 8, "uploadThroughput": up_mbps * 1e6 / 8})
    return log


def open_emulated(context, url: str, errors: Optional[list] = None, **conditions) -> tuple:
    """A page of `context` (a fresh or a persistent profile) on `url` over the emulated network
    (`NETWORK` unless `conditions` say otherwise): returns (page, NetLog)."""
    page = context.pages[0] if getattr(context, "pages", None) else context.new_page()
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log = emulate_network(context, page, **conditions)
    page.goto(url)
    return page, log


def open_bench_page(browser, url: str, errors: Optional[list] = None, threads: Optional[int] = None):
    """A new page on /bench/decoder.html with window.bench loaded (threads=1: onnxruntime-web single-threaded)."""
    page = browser.new_page()
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url + "/bench/decoder.html" + ("?threads=1" if threads == 1 else ""))
    page.wait_for_function("() => window.bench && window.bench.ready === true", timeout=60_000)
    return page


def standin_or_given(checkpoint: Optional[str]) -> Path:
    """The checkpoint given, or (for a quick run) the seed-0 stand-in built into a temp folder."""
    if checkpoint:
        return Path(checkpoint)
    import tempfile

    from standin import build_standin_checkpoint

    return build_standin_checkpoint("vit_t", Path(tempfile.gettempdir()) / "mobilesam-bench")


def bench_parser(description: str):
    """The arguments every benchmark takes: --checkpoint, --image, --model-type."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", required=True, help="vit_t checkpoint (mobile_sam.pt or a stand-in)")
    parser.add_argument("--image", default="truck.jpg", help="a photo in examples/ (or the shared samples folder beside the repository), or a path")
    parser.add_argument("--model-type", default="vit_t")
    return parser
