"""Load test of the running app: many concurrent gradio_client users, each with its own image.

    python bench/load.py --checkpoint PATH [--clients 16] [--duration 120] [--min-requests N] [--json]
                         [--url http://127.0.0.1:7860 [--pid PID]]
                         [--embedding-cache-mb 256] [--image-store-mb 512] [--cache-dir DIR]

Without --url the script starts `app.py` itself on a free port (with --checkpoint and the cache
options) and stops it afterwards. --checkpoint is always needed: before the run, every client's
expected masks are computed once here with the PyTorch predictor from the same weights.

Each client has its own picture (a crop, flip and tint of a sample photo, at its own size, so
every client's content hash differs) and its own prompts. It calls the `segment` API in a loop
(upload, server-side embedding, mask) and checks every mask against its own expected mask
(IoU >= 0.99, same size, same scores), so a mix-up between sessions cannot go unnoticed. Every
few requests it also fetches its embedding (`/msam/embedding/...`) and its stored image
(`/msam/image/...`) by its own content id and checks them. The only acceptable failure is an
explicit refusal: Gradio's "queue is full" or the app's "The server is busy" (the encoder's queue
full). The server's memory (VmRSS, VmHWM from /proc) is sampled throughout: its
peak under the load may exceed its peak for one warm-up request (model, runtime, one encoder run)
by the embedding cache bound + --memory-headroom-mb at most (the concurrent requests' buffers).
The app's GET /msam/health gives the encoder's runs and their time: the load's encodes per second
are reported against what the encoder does for one image alone (measured in the warm-up).

    python bench/load.py --checkpoint PATH --visitors 64 --arrivals 120 --photo-every 120
                         --prompt-every 15 --duration 300 [--encode-queue N]

With --visitors, an open model of people instead of the closed loop: each visitor arrives at a
random moment in the first --arrivals seconds, chooses a new photo on arrival (one the server has
never seen, so it is encoded) and again after exponential pauses of --photo-every seconds on average,
and sends a prompt on its current photo after exponential pauses of --prompt-every seconds on
average. Requests are reported apart: those with an encode (a photo's first) and prompts on photos
already encoded. Each answer is checked for its photo's size, and every later answer to the same
photo and prompt must be the same mask (a mix-up between visitors would differ). "busy" answers
(the encoder's queue full) are counted apart from other errors.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "tests"):  # the repository, and tests/support.py (shared with the tests)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from mobilesam_app.images import load_rgb_image  # noqa: E402
from mobilesam_app.store import image_id_of  # noqa: E402
from support import AppProcess, api_client, find_listening_pid, mask_iou, proc_memory_mb  # noqa: E402

SAMPLE_DIRS = [ROOT / "examples", ROOT.parent / "shared" / "samples"]
MIN_IOU = 0.99
SCORE_ATOL = 2e-3
EMBEDDING_MIN_COSINE = 0.999
CHECK_EVERY = 5  # fetch the embedding and the stored image every this many requests of a client
EMBEDDING_MB = 4  # one cached embedding: float32 1×256×64×64
MIN_REQUESTS_GRACE_S = 240.0  # how long past the deadline a client may take to reach --min-requests


# --------------------------------------------------------------------------- the clients' data

@dataclass
class Case:
    """One client's picture, prompts and the masks the PyTorch predictor gives for them."""

    index: int
    path: Path
    image: np.ndarray
    image_id: str
    prompts: List[str]
    expected_masks: List[np.ndarray] = field(default_factory=list)
    expected_scores: List[np.ndarray] = field(default_factory=list)
    embedding: Optional[np.ndarray] = None


def sample_photos() -> List[Path]:
    for folder in SAMPLE_DIRS:
        photos = sorted(folder.glob("*.jpg"))
        if photos:
            return photos
    raise FileNotFoundError(f"no sample photos (*.jpg) in {[str(d) for d in SAMPLE_DIRS]}")


def derive_image(source: np.ndarray, i: int) -> np.ndarray:
    """Client i's picture: its own crop, flip, tint and size (long side 480 + 24·i pixels)."""
    h, w = source.shape[:2]
    margin = (i % 4) * 0.05
    crop = source[int(h * margin): h - int(h * margin * 0.5), int(w * margin * 0.5): w - int(w * margin)]
    image = Image.fromarray(crop)
    if (i // 2) % 2:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if (i // 4) % 2:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    long_side = 480 + 24 * i
    scale = long_side / max(image.size)
    image = image.resize((max(2, round(image.size[0] * scale)), max(2, round(image.size[1] * scale))),
                         Image.Resampling.BILINEAR)
    tint = 1.0 + 0.08 * np.array([(i % 3) - 1, ((i // 3) % 3) - 1, 0.0])
    return np.clip(np.asarray(image, dtype=np.float32) * tint, 0, 255).astype(np.uint8)


def client_prompts(i: int, height: int, width: int) -> List[str]:
    """Two prompts per client: a point (multimask) and a box with a background point."""
    fx, fy = 0.35 + 0.3 * ((i * 7) % 10) / 10, 0.35 + 0.3 * ((i * 3) % 10) / 10
    point = {"points": [[round(width * fx), round(height * fy), 1]], "box": None, "multimask": True}
    box = {"points": [[round(width * 0.15), round(height * 0.9), 0]],
           "box": [round(width * 0.2), round(height * 0.2), round(width * 0.75), round(height * 0.8)],
           "multimask": False}
    return [json.dumps(point), json.dumps(box)]


def make_cases(n: int, out_dir: Path) -> List[Case]:
    """n clients' pictures written as JPEG into out_dir, read back as the server will read them."""
    photos = sample_photos()
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(n):
        source = np.asarray(Image.open(photos[i % len(photos)]).convert("RGB"))
        path = out_dir / f"client{i:02d}.jpg"
        Image.fromarray(derive_image(source, i)).save(path, format="JPEG", quality=90)
        image = load_rgb_image(path)  # exactly the pixels the server will decode
        cases.append(Case(i, path, image, image_id_of(image), client_prompts(i, *image.shape[:2])))
    ids = {c.image_id for c in cases}
    if len(ids) != n:
        raise RuntimeError("the derived client images do not all have distinct content hashes")
    return cases


def compute_expected(cases: List[Case], checkpoint: Path, model_type: str = "vit_t") -> None:
    """Each case's masks and scores from the PyTorch predictor, as the server's `segment` picks them."""
    import torch

    from mobilesam import SamPredictor
    from mobilesam.hub import load_model_from
    from mobilesam_app.prompts import parse_prompts

    model = load_model_from(checkpoint, model_type, "cpu")
    predictor = SamPredictor(model)
    with torch.inference_mode():
        for case in cases:
            predictor.set_image(case.image)
            case.embedding = predictor.get_image_embedding().float().cpu().numpy()
            for text in case.prompts:
                masks, scores, _ = predictor.predict(**parse_prompts(text, case.image.shape[:2]))
                case.expected_masks.append(masks[int(np.argmax(scores))])
                case.expected_scores.append(scores)


# --------------------------------------------------------------------------- the server

class MemorySampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds, from start() until stop(), in phases.

    The run measures two phases: the warm-up (one request with its encode: the model, the runtime and
    one encoder run, everything one request needs), then the load. `mark()` ends a phase. The load's
    growth is its peak over the warm-up's peak, so that the baseline is a high-water mark rather than
    one sample taken whenever malloc_trim last ran (which moved it by up to 180 MiB between runs).
    """

    def __init__(self, pid: Optional[int], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: List[float] = []
        self.times: List[float] = []
        self.started_at, self._phase_from = time.time(), 0
        self.hwm = 0.0
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def sample(self) -> Optional[float]:
        if self.pid is None:
            return None
        try:
            mem = proc_memory_mb(self.pid)
        except OSError:
            return None
        with self._lock:
            self.samples.append(mem.get("VmRSS", 0.0))
            self.times.append(time.time() - self.started_at)
            self.hwm = max(self.hwm, mem.get("VmHWM", 0.0))
            return self.samples[-1]

    def mark(self) -> Optional[float]:
        """Ends the current phase (with one more sample): its peak RSS; the next phase's clock starts at 0."""
        self.sample()
        with self._lock:
            phase = self.samples[self._phase_from:]
            self._phase_from = len(self.samples)
            self.started_at = time.time()
            return max(phase) if phase else None

    def timeline(self, step: float = 10.0) -> List[List[float]]:
        """[seconds, MiB] pairs: the highest RSS in each `step`-second window of the current phase."""
        windows: Dict[int, float] = {}
        with self._lock:
            points = list(zip(self.times[self._phase_from:], self.samples[self._phase_from:]))
        for t, rss in points:
            windows[int(t // step)] = max(windows.get(int(t // step), 0.0), rss)
        return [[k * step, round(v, 1)] for k, v in sorted(windows.items())]

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> Optional[float]:
        """Stops sampling: the last phase's peak RSS."""
        self._stop_event.set()
        self.join(timeout=5)
        with self._lock:
            phase = self.samples[self._phase_from:]
        return max(phase) if phase else None


def memory_figures(warm_peak: Optional[float], load_peak: Optional[float], sampler: MemorySampler,
                   embedding_cache_mb: float, headroom_mb: float) -> dict:
    """The server's memory over the run (MiB) and whether the load stayed within one request's peak +
    the embedding cache bound + `headroom_mb` (the concurrent requests' buffers)."""
    growth = None if warm_peak is None or load_peak is None else load_peak - warm_peak
    return {
        "server_memory_mb": {
            "pid": sampler.pid, "rss_peak_one_request": _r(warm_peak), "rss_peak_during_load": _r(load_peak),
            "rss_end": _r(sampler.samples[-1] if sampler.samples else None),
            "growth_during_load": _r(growth), "vm_hwm": _r(sampler.hwm or None), "samples": len(sampler.samples),
            "timeline_peak_per_10s": sampler.timeline(),  # [seconds into the load, MiB]
        },
        "memory_within_bounds": None if growth is None else bool(growth <= embedding_cache_mb + headroom_mb),
    }


# --------------------------------------------------------------------------- the run

def refused_for_load(message: str) -> bool:
    """An explicit refusal for load, the only failure allowed: Gradio's "queue is full" or the app's
    "The server is busy: N images are ahead of yours" (its encoder's queue is full)."""
    message = message.lower()
    return "queue is full" in message or "server is busy" in message


@dataclass
class Tally:
    latencies_ms: List[float] = field(default_factory=list)
    first_ms: List[float] = field(default_factory=list)  # each client's first request: includes its encode
    queue_full: int = 0
    errors: List[str] = field(default_factory=list)
    mismatches: List[str] = field(default_factory=list)
    embedding_checks: int = 0
    embedding_evicted: int = 0
    image_checks: int = 0
    per_client: Dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def http_get(url: str, timeout: float = 60.0):
    """(status, body) of a GET; 4xx/5xx give their status instead of raising."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_response(case: Case, k: int, result) -> Optional[str]:
    """None if the `segment` result is case's own mask for prompt k; else what is wrong."""
    mask_path, info = result
    mask = np.asarray(Image.open(mask_path))
    if mask.shape != case.image.shape[:2]:
        return f"client {case.index}: mask of size {mask.shape}, its image is {case.image.shape[:2]}"
    iou = mask_iou(mask > 127, case.expected_masks[k])
    if iou < MIN_IOU:
        return f"client {case.index} prompt {k}: IoU {iou:.4f} with its expected mask"
    scores = np.asarray(json.loads(info)["scores"])
    if scores.shape != case.expected_scores[k].shape or not np.allclose(scores, case.expected_scores[k],
                                                                        atol=SCORE_ATOL):
        return f"client {case.index} prompt {k}: scores {scores.tolist()} != {case.expected_scores[k].tolist()}"
    return None


def check_side_routes(url: str, case: Case, tally: Tally, model_type: str) -> None:
    """The client's own embedding and stored image, fetched by its content id."""
    status, body = http_get(f"{url}/msam/embedding/{model_type}/{case.image_id}.f16")
    problem = None
    if status == 404:
        with tally.lock:
            tally.embedding_evicted += 1  # evicted from the bounded cache meanwhile: allowed
    elif status != 200:
        problem = f"client {case.index}: embedding route answered {status}"
    else:
        got = np.frombuffer(body, dtype="<f2").astype(np.float32).ravel()
        want = case.embedding.ravel()
        cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want) + 1e-12)) if got.size == want.size \
            else -1.0
        if cosine < EMBEDDING_MIN_COSINE:
            problem = f"client {case.index}: embedding differs from its own (cosine {cosine:.5f})"
        with tally.lock:
            tally.embedding_checks += 1
    status, body = http_get(f"{url}/msam/image/{case.image_id}.png")
    if status == 200:
        import io

        got = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        if got.shape != case.image.shape or not np.array_equal(got, case.image):
            problem = f"client {case.index}: /msam/image returned other pixels"
        with tally.lock:
            tally.image_checks += 1
    elif status != 404:  # 404: pruned from the bounded store, allowed
        problem = f"client {case.index}: image route answered {status}"
    if problem:
        with tally.lock:
            tally.mismatches.append(problem)


def client_loop(url: str, case: Case, deadline: float, tally: Tally, download_dir: Path, model_type: str,
                min_requests: int = 0) -> None:
    """Requests until `deadline`, and past it (for at most MIN_REQUESTS_GRACE_S) until `min_requests` answers."""
    from gradio_client import handle_file

    try:
        client = api_client(url, download_dir)
    except Exception as exc:  # noqa: BLE001 - every failure is counted
        with tally.lock:
            tally.errors.append(f"client {case.index}: cannot connect: {type(exc).__name__}: {exc}")
        return
    n = 0
    try:
        while time.time() < deadline or (n < min_requests and time.time() < deadline + MIN_REQUESTS_GRACE_S):
            k = n % len(case.prompts)
            start = time.perf_counter()
            try:
                result = client.predict(handle_file(str(case.path)), case.prompts[k], api_name="/segment")
            except Exception as exc:  # noqa: BLE001
                message = f"{type(exc).__name__}: {exc}"
                with tally.lock:
                    if refused_for_load(message):
                        tally.queue_full += 1
                    else:
                        tally.errors.append(f"client {case.index}: {message[:300]}")
                time.sleep(0.5)
                continue
            elapsed_ms = (time.perf_counter() - start) * 1000
            problem = check_response(case, k, result)
            with tally.lock:
                tally.latencies_ms.append(elapsed_ms)
                if n == 0:
                    tally.first_ms.append(elapsed_ms)
                tally.per_client[case.index] = tally.per_client.get(case.index, 0) + 1
                if problem:
                    tally.mismatches.append(problem)
            try:
                os.unlink(result[0])
            except OSError:
                pass
            n += 1
            if n % CHECK_EVERY == 1:
                check_side_routes(url, case, tally, model_type)
    finally:
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass


def server_health(url: str) -> Optional[dict]:
    """The app's GET /msam/health (Engine.health), or None from a server without it."""
    status, body = http_get(f"{url}/msam/health", timeout=30)
    return json.loads(body) if status == 200 else None


def wait_for_encoder(url: str, timeout: float = 900.0) -> None:
    """Until the app's fast encoder is ready (its start-up export is not part of what is measured)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        health = server_health(url)
        if health is None or health["encoder"]["ready"]:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the app's encoder was not ready after {timeout:g} s")


def warm_up(url: str, download_dir: Path, work_dir: Path, requests: int = 3) -> Optional[float]:
    """`requests` requests one after the other, each with its own picture that no client uses: the
    baseline memory includes an encode, and the encoder's time for one image alone (ms, from the
    server's health figures of all but the first, or None without them) is returned."""
    from gradio_client import handle_file

    source = Image.open(sample_photos()[0]).convert("RGB")
    client = api_client(url, download_dir)
    try:
        for i in range(requests):
            path = work_dir / f"warmup{i}.jpg"
            source.resize((320 + 16 * i, 240 + 12 * i)).save(path, format="JPEG")
            if i == 1:
                before = server_health(url)
            client.predict(handle_file(str(path)), json.dumps({"points": [[160, 120, 1]]}), api_name="/segment")
        after = server_health(url)
    finally:
        client.close()
    if requests < 2 or before is None or after is None:
        return None
    runs = after["encoder"]["encodes"] - before["encoder"]["encodes"]
    return (after["encoder"]["encode_ms_total"] - before["encoder"]["encode_ms_total"]) / runs if runs else None


def encoder_figures(before: Optional[dict], after: Optional[dict], elapsed_s: float,
                    alone_ms: Optional[float]) -> dict:
    """The encoder's work during the load from the server's health figures before and after it: runs,
    runs per second against what one image alone (`alone_ms`) would allow, mean time per run."""
    if before is None or after is None or not elapsed_s:
        return {}
    runs = after["encoder"]["encodes"] - before["encoder"]["encodes"]
    busy_ms = after["encoder"]["encode_ms_total"] - before["encoder"]["encode_ms_total"]
    per_s = runs / elapsed_s
    return {"encoder": {
        "backend": after["encoder"]["backend"], "encodes": runs, "encodes_per_s": round(per_s, 3),
        "encode_ms_alone": _r(alone_ms), "encode_ms_under_load": _r(busy_ms / runs) if runs else None,
        "encodes_per_s_alone": round(1000 / alone_ms, 3) if alone_ms else None,
        "ratio_to_alone": round(per_s * alone_ms / 1000, 3) if alone_ms else None,
        "busy_fraction": round(busy_ms / 1000 / elapsed_s, 3),
    }}


# --------------------------------------------------------------------------- visitors with pauses

@dataclass
class VisitorTally:
    encode_ms: List[float] = field(default_factory=list)  # a photo's first request (the server encodes it)
    prompt_ms: List[float] = field(default_factory=list)  # prompts on a photo already encoded
    busy: int = 0
    errors: List[str] = field(default_factory=list)
    mismatches: List[str] = field(default_factory=list)
    photos: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def visitor(url: str, index: int, source: np.ndarray, start_at: float, deadline: float, photo_every: float,
            prompt_every: float, tally: VisitorTally, work: Path, seed: int) -> None:
    """One visitor (see the module docstring); its photos are derive_image variants no one else gets."""
    from gradio_client import handle_file

    rng = np.random.default_rng(seed)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        client = api_client(url, work / "downloads")
    except Exception as exc:  # noqa: BLE001
        with tally.lock:
            tally.errors.append(f"visitor {index}: cannot connect: {exc}")
        return
    k = 0
    try:
        while time.time() < deadline:
            variant = 1000 + index * 64 + k  # a new photo, never seen by the server
            k += 1
            image = derive_image(source, variant % 97)[: 300 + (variant % 211), :]
            path = work / "images" / f"visitor{index:02d}-{k}.jpg"
            Image.fromarray(image).save(path, format="JPEG", quality=90)
            h, w = load_rgb_image(path).shape[:2]
            prompts = client_prompts(variant, h, w)
            answers: Dict[int, np.ndarray] = {}
            next_photo = time.time() + rng.exponential(photo_every)
            first = True
            while time.time() < (deadline if first else min(deadline, next_photo)):  # (a first refused: again)
                j = int(rng.integers(len(prompts)))
                start = time.perf_counter()
                try:
                    mask_path, _ = client.predict(handle_file(str(path)), prompts[j], api_name="/segment")
                except Exception as exc:  # noqa: BLE001
                    message = f"{type(exc).__name__}: {exc}"
                    with tally.lock:
                        if refused_for_load(message):
                            tally.busy += 1
                        else:
                            tally.errors.append(f"visitor {index}: {message[:300]}")
                    time.sleep(rng.exponential(prompt_every))
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                mask = np.asarray(Image.open(mask_path)) > 127
                os.unlink(mask_path)
                problem = None
                if mask.shape != (h, w):
                    problem = f"visitor {index}: mask {mask.shape} for a {h}x{w} photo"
                elif j in answers and not np.array_equal(answers[j], mask):
                    problem = f"visitor {index}: the same prompt on the same photo gave another mask"
                answers.setdefault(j, mask)
                with tally.lock:
                    (tally.encode_ms if first else tally.prompt_ms).append(elapsed)
                    tally.photos += first
                    if problem:
                        tally.mismatches.append(problem)
                first = False
                time.sleep(min(rng.exponential(prompt_every), max(0.0, next_photo - time.time()) + 0.01))
    finally:
        client.close()


def run_visitors(checkpoint: Path, visitors: int, arrivals: float, photo_every: float, prompt_every: float,
                 duration: float, url: Optional[str] = None, pid: Optional[int] = None,
                 embedding_cache_mb: Optional[int] = None, memory_headroom_mb: float = 512.0, log=None,
                 encode_queue: Optional[int] = None) -> dict:
    """The visitors-with-pauses run; returns its figures (`encode_queue`: the app's --encode-queue)."""
    from mobilesam_app.startup import AppConfig

    log = log or (lambda msg: None)
    embedding_cache_mb = AppConfig.embedding_cache_mb if embedding_cache_mb is None else embedding_cache_mb
    encode_queue = AppConfig.encode_queue if encode_queue is None else encode_queue
    work = Path(tempfile.mkdtemp(prefix="mobilesam-visitors-"))
    (work / "images").mkdir()
    (work / "downloads").mkdir()
    app = None
    try:
        if url is None:
            app = AppProcess(checkpoint, work / "cache",
                             ["--embedding-cache-mb", embedding_cache_mb, "--encode-queue", encode_queue])
            url, pid = app.url, app.pid
        url = url.rstrip("/")
        source = np.asarray(Image.open(sample_photos()[0]).convert("RGB"))
        wait_for_encoder(url)
        sampler = MemorySampler(pid)
        sampler.start()
        alone_ms = warm_up(url, work / "downloads", work)
        warm_peak = sampler.mark()
        health_before = server_health(url)
        tally = VisitorTally()
        rng = np.random.default_rng(7)
        start = time.time()
        deadline = start + duration
        threads = [threading.Thread(target=visitor, daemon=True, args=(
            url, i, source, start + rng.uniform(0, arrivals), deadline, photo_every, prompt_every, tally, work,
            100 + i)) for i in range(visitors)]
        log(f"{visitors} visitors arriving over {arrivals:g} s, for {duration:g} s")
        for t in threads:
            t.start()
        for t in threads:  # the requests in flight at the deadline get 120 s more, all together
            t.join(timeout=max(0.0, deadline + 120 - time.time()))
        elapsed = time.time() - start
        load_peak = sampler.stop()
        health_after = server_health(url)
        served = len(tally.encode_ms) + len(tally.prompt_ms)
        result = {
            "model": "visitors", "visitors": visitors, "arrivals_s": arrivals, "photo_every_s": photo_every,
            "prompt_every_s": prompt_every, "duration_s": duration, "elapsed_s": round(elapsed, 1),
            "requests_served": served, "throughput_rps": round(served / elapsed, 2),
            "photos_encoded": tally.photos, "encodes_per_s": round(tally.photos / elapsed, 3),
            "errors": len(tally.errors), "error_samples": tally.errors[:5], "busy": tally.busy,
            "mismatches": len(tally.mismatches), "mismatch_samples": tally.mismatches[:5],
            "stuck_visitors": sum(t.is_alive() for t in threads),
            "prompt_on_encoded_ms": {"n": len(tally.prompt_ms), "p50": percentile(tally.prompt_ms, 50),
                                     "p95": percentile(tally.prompt_ms, 95)},
            "request_with_encode_ms": {"n": len(tally.encode_ms), "p50": percentile(tally.encode_ms, 50),
                                       "p95": percentile(tally.encode_ms, 95)},
            **memory_figures(warm_peak, load_peak, sampler, embedding_cache_mb, memory_headroom_mb),
            **encoder_figures(health_before, health_after, elapsed, alone_ms),
            "encode_queue": encode_queue if app is not None else None,
            "bounds": {"embedding_cache_mb": embedding_cache_mb, "memory_headroom_mb": memory_headroom_mb},
            "host": {"cpus": os.cpu_count(), "cpu": cpu_model(), "load_average": os.getloadavg()},
        }
        result["passed"] = bool(served and not tally.errors and not tally.mismatches
                                and not result["stuck_visitors"] and result["memory_within_bounds"] is not False)
        return result
    finally:
        if app is not None:
            app.stop()
        shutil.rmtree(work, ignore_errors=True)


def cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


def percentile(values: List[float], q: float) -> Optional[float]:
    return round(float(np.percentile(values, q)), 1) if values else None


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0


def run(checkpoint: Path, url: Optional[str] = None, pid: Optional[int] = None, clients: int = 16,
        duration: float = 120.0, model_type: str = "vit_t", embedding_cache_mb: Optional[int] = None,
        image_store_mb: Optional[int] = None, cache_dir: Optional[Path] = None,
        memory_headroom_mb: float = 512.0, log=None, min_requests: int = 0) -> dict:
    """Run the load test; returns the figures as a dict (see the module docstring). Each client goes on
    past `duration` until it has `min_requests` answers (a fixed amount of work on a slow host)."""
    from mobilesam_app.startup import AppConfig

    log = log or (lambda msg: None)
    embedding_cache_mb = AppConfig.embedding_cache_mb if embedding_cache_mb is None else embedding_cache_mb
    image_store_mb = AppConfig.image_store_mb if image_store_mb is None else image_store_mb
    work = Path(tempfile.mkdtemp(prefix="mobilesam-load-"))
    app, starter, starting = None, None, {}
    try:
        t0 = time.time()
        if url is None:  # the app starts while the expected masks are computed
            cache_dir = Path(cache_dir) if cache_dir else work / "cache"
            args = ["--model-type", model_type, "--embedding-cache-mb", embedding_cache_mb,
                    "--image-store-mb", image_store_mb]

            def start_app():
                try:
                    starting["app"] = AppProcess(checkpoint, cache_dir, args)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    starting["error"] = exc

            starter = threading.Thread(target=start_app, daemon=True)
            starter.start()
        cases = make_cases(clients, work / "images")
        compute_expected(cases, Path(checkpoint), model_type)
        log(f"{clients} client images and their expected masks ready in {time.time() - t0:.1f} s")
        if url is None:
            starter.join()
            if "error" in starting:
                raise starting["error"]
            app = starting["app"]
            url, pid = app.url, app.pid
            log(f"app started at {url} (pid {pid}) after {time.time() - t0:.1f} s")
        elif pid is None:
            from urllib.parse import urlparse

            parsed = urlparse(url)
            if parsed.hostname in ("127.0.0.1", "localhost") and parsed.port:
                pid = find_listening_pid(parsed.port)
        url = url.rstrip("/")
        downloads = work / "downloads"
        downloads.mkdir()
        wait_for_encoder(url)
        sampler = MemorySampler(pid)
        sampler.start()
        alone_ms = warm_up(url, downloads, work)
        warm_peak = sampler.mark()
        health_before = server_health(url)
        tally = Tally()
        deadline = time.time() + duration
        threads = [threading.Thread(target=client_loop, daemon=True,
                                    args=(url, c, deadline, tally, downloads, model_type, min_requests))
                   for c in cases]
        log(f"running {clients} clients for {duration:g} s")
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(0.0, deadline + MIN_REQUESTS_GRACE_S + 60 - time.time()))
        elapsed = time.time() - start
        load_peak = sampler.stop()
        health_after = server_health(url)
        stuck = sum(t.is_alive() for t in threads)

        image_store = folder_bytes(Path(cache_dir) / "images") if cache_dir else None
        served = len(tally.latencies_ms)
        later = sorted(tally.latencies_ms)
        for first in tally.first_ms:
            later.remove(first)
        result = {
            "clients": clients, "duration_s": duration, "elapsed_s": round(elapsed, 1),
            "requests_served": served, "throughput_rps": round(served / elapsed, 2) if elapsed else None,
            "requests_per_client": {"min": min(tally.per_client.values(), default=0),
                                    "max": max(tally.per_client.values(), default=0)},
            "errors": len(tally.errors), "error_samples": tally.errors[:5], "queue_full": tally.queue_full,
            "mismatches": len(tally.mismatches), "mismatch_samples": tally.mismatches[:5],
            "stuck_clients": stuck,
            "latency_ms": {"p50": percentile(tally.latencies_ms, 50), "p95": percentile(tally.latencies_ms, 95),
                           "max": round(max(tally.latencies_ms), 1) if served else None},
            "latency_ms_first_request": {"p50": percentile(tally.first_ms, 50),
                                         "p95": percentile(tally.first_ms, 95)},
            "latency_ms_later_requests": {"p50": percentile(later, 50), "p95": percentile(later, 95)},
            "embedding_checks": tally.embedding_checks, "embedding_evicted": tally.embedding_evicted,
            "image_checks": tally.image_checks,
            **memory_figures(warm_peak, load_peak, sampler, embedding_cache_mb, memory_headroom_mb),
            **encoder_figures(health_before, health_after, elapsed, alone_ms),
            "bounds": {"embedding_cache_mb": embedding_cache_mb, "image_store_mb": image_store_mb,
                       "memory_headroom_mb": memory_headroom_mb,
                       "image_store_bytes": image_store},
            "image_store_within_bounds": None if image_store is None else image_store <= image_store_mb * 2**20,
            "host": {"cpus": os.cpu_count(), "cpu": cpu_model(), "load_average": os.getloadavg(), "url": url,
                     "model_type": model_type},
        }
        result["passed"] = bool(served > 0 and not tally.errors and not tally.mismatches and not stuck
                                and result["memory_within_bounds"] is not False
                                and result["image_store_within_bounds"] is not False)
        if app is not None and not result["passed"]:
            result["app_log_tail"] = app.log_tail(3000)
        return result
    finally:
        if starter is not None:
            starter.join()  # AppProcess gives up by itself after its start-up timeout
            app = starting.get("app")
        if app is not None:
            app.stop()
        shutil.rmtree(work, ignore_errors=True)


def _r(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="the weights the app serves (for the expected masks; and to start the app)")
    parser.add_argument("--url", help="a running app (default: start app.py on a free port)")
    parser.add_argument("--pid", type=int, help="the running app's pid, for memory figures (default: found by port)")
    parser.add_argument("--model-type", default="vit_t")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds")
    parser.add_argument("--min-requests", type=int, default=0,
                        help="each client goes on past --duration until it has this many answers")
    parser.add_argument("--embedding-cache-mb", type=int, help="app flag (default: the app's default)")
    parser.add_argument("--image-store-mb", type=int, help="app flag (default: the app's default)")
    parser.add_argument("--cache-dir", type=Path, help="app --cache-dir (default: a temporary folder)")
    parser.add_argument("--memory-headroom-mb", type=float, default=512.0,
                        help="allowed RSS peak under the load beyond one request's peak and the embedding cache "
                             "bound")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--encode-queue", type=int, help="app flag, with --visitors (default: the app's default)")
    parser.add_argument("--visitors", type=int, help="visitors with pauses instead of the closed loop (see above)")
    parser.add_argument("--arrivals", type=float, default=120.0, help="visitors arrive over this many seconds")
    parser.add_argument("--photo-every", type=float, default=120.0, help="mean seconds between a visitor's photos")
    parser.add_argument("--prompt-every", type=float, default=15.0, help="mean seconds between a visitor's prompts")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.visitors:
        result = run_visitors(args.checkpoint, args.visitors, args.arrivals, args.photo_every, args.prompt_every,
                              args.duration, args.url, args.pid, args.embedding_cache_mb, args.memory_headroom_mb, log,
                              args.encode_queue)
        print(json.dumps(result, indent=None if args.json else 1))
        return 0 if result["passed"] else 1
    result = run(args.checkpoint, args.url, args.pid, args.clients, args.duration, args.model_type,
                 args.embedding_cache_mb, args.image_store_mb, args.cache_dir, args.memory_headroom_mb, log,
                 args.min_requests)
    if args.json:
        print(json.dumps(result))
    else:
        mem = result["server_memory_mb"]
        print(f"{result['requests_served']} requests in {result['elapsed_s']} s by {result['clients']} clients "
              f"({result['throughput_rps']} req/s); errors {result['errors']}, queue full or busy {result['queue_full']}, "
              f"mask mix-ups {result['mismatches']}")
        print(f"latency p50 {result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms, "
              f"max {result['latency_ms']['max']} ms; each client's first request (with its encode) p50 "
              f"{result['latency_ms_first_request']['p50']} ms, later requests p50 "
              f"{result['latency_ms_later_requests']['p50']} ms, p95 {result['latency_ms_later_requests']['p95']} ms")
        print(f"server RSS peak {mem['rss_peak_one_request']} MiB for one request, {mem['rss_peak_during_load']} "
              f"MiB under the load (+{mem['growth_during_load']}), VmHWM {mem['vm_hwm']} MiB; embedding cache bound "
              f"{result['bounds']['embedding_cache_mb']} MiB")
        enc = result.get("encoder")
        if enc:
            print(f"encoder ({enc['backend']}): {enc['encodes']} runs, {enc['encodes_per_s']}/s against "
                  f"{enc['encodes_per_s_alone']}/s for one image alone ({enc['encode_ms_alone']} ms; ratio "
                  f"{enc['ratio_to_alone']}); {enc['encode_ms_under_load']} ms per run under the load, busy "
                  f"{enc['busy_fraction']:.0%} of the time")
        for line in result["error_samples"] + result["mismatch_samples"]:
            print("  " + line)
        print("PASSED" if result["passed"] else "FAILED")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
