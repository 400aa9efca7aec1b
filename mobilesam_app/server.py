"""HTTP routes the browser needs beside Gradio's, and the cross-origin isolation headers.

- `/web/<module>.js|.css`: the browser code (web/), no build step.
- `/web/ort/<tag>/<file>`: onnxruntime-web's dist/ from web/node_modules when npm installed it,
  under a tag that is the digest of its runtime files (`ort_tag`), cached by browsers for a year
  (immutable); `/web/ort/<file>` serves the same files with an hour's caching. Without
  web/node_modules the page loads the same pinned version from the jsDelivr CDN.
  Both are served from memory, Brotli-compressed (else gzip) for browsers that accept it
  (`MemoryFiles`).
- `/msam/models/<sha256 prefix>/<name>.onnx` (`decoder_url`): the exported decoders, checked against
  their digest sidecar, Brotli/gzip-compressed, cached by browsers for a year (immutable: the URL
  changes with the bytes); `/msam/models/<name>.onnx` serves the current bytes, revalidated by ETag.
- `/msam/embedding/<model>/<image id>.f16`: an embedding as raw little-endian float16;
  `.u8`: the same embedding as per-channel uint8 with a versioned header (half the bytes; see
  mobilesam_app/embedding_codec.py). `client_info` says which one the page fetches.
- `/msam/image/<image id>.png`: an uploaded (content-addressed) image, checked against its id.
- `POST /msam/encode?width=W&height=H`: the page's copy of a photo resized to the encoder's input
  (mobilesam_app/resized_upload.py), body the image file; answers the client info as JSON, or
  400 {"error": message} for bad input.
- `POST /msam/store/<image id>`: write that image to the store now (fsynced) and answer 200 once it
  is on disk: the page shows a share link only after this (a link must survive a crash).
"""
import gzip
import hashlib
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Optional

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .store import lower_thread_priority

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "web"
ORT_DIST = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WEB_SUFFIXES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}
ORT_SUFFIXES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}
# What the page's decoder loads (web/decoder-core.js: the wasm bundle, its threaded runtime).
ORT_RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
ISOLATION_HEADERS = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class IsolationHeadersMiddleware:
    """Adds COOP/COEP/CORP to every HTTP response so onnxruntime-web may use threads."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in ISOLATION_HEADERS if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class EarlyPageMiddleware:
    """Writes the page's head additions (`page_head`) and the early upload control (`page_body`)
    into the HTML of "/" as it is served.

    Gradio adds a Blocks' `head` to the page only once its own JavaScript has started, a second or
    more after the page opens; written into the HTML, the decoder worker starts right away and
    onnxruntime-web's runtime and the decoder download while Gradio boots. Gradio's own copy, added
    later, changes nothing: the config is the same, the guarded stub keeps the real API, and a module
    already run is not run again. The early control, first in <body>, takes a photo before Gradio's
    upload box exists (web/early.js). Other responses pass untouched.
    """

    HEAD = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
    BODY = re.compile(rb"<body(\s[^>]*)?>", re.IGNORECASE)

    def __init__(self, app, head: str, body: str = "") -> None:
        self.app = app
        self.snippet = head.encode()
        self.body_snippet = body.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/":
            return await self.app(scope, receive, send)
        start = None
        chunks = []

        async def rewrite(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = original = b"".join(chunks)
            headers = list(start.get("headers", []))
            names = {k.lower(): v for k, v in headers}
            if (start.get("status") == 200 and names.get(b"content-type", b"").startswith(b"text/html")
                    and b"content-encoding" not in names):
                body = self._insert_after(self.HEAD, self.snippet, body)
                if self.body_snippet:  # the <body> tag after </head> (not a "<body" in the head's scripts)
                    body = self._insert_after(self.BODY, self.body_snippet, body, max(body.lower().find(b"</head>"), 0))
                if body is not original:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)

    @staticmethod
    def _insert_after(tag: "re.Pattern", snippet: bytes, body: bytes, start: int = 0) -> bytes:
        """`body` with `snippet` on a line of its own after the first match of `tag` from `start` (as it
        was without one)."""
        match = tag.search(body, start)
        return body[:match.end()] + b"\n" + snippet + body[match.end():] if match else body


def ort_version() -> str:
    """The onnxruntime-web version pinned in web/package.json."""
    with open(WEB_DIR / "package.json") as f:
        return json.load(f)["dependencies"]["onnxruntime-web"].lstrip("^~=")


IMMUTABLE = "public, max-age=31536000, immutable"
TAG_LENGTH = 16  # hex digits of a SHA-256 in the content-addressed URLs
MAX_PROMPT_BYTES = 64 * 1024  # POST /msam/decode: a page's prompt is a few hundred bytes
_ort_tag_cache: Dict[tuple, str] = {}


def ort_tag() -> str:
    """The first TAG_LENGTH hex digits of the SHA-256 of onnxruntime-web's runtime files (their names
    and bytes, ORT_RUNTIME_FILES): the runtime's URLs change whenever those bytes do. Recomputed when
    a file's size or mtime changes."""
    stats = tuple((name, (ORT_DIST / name).stat().st_mtime_ns, (ORT_DIST / name).stat().st_size)
                  for name in ORT_RUNTIME_FILES)
    if stats not in _ort_tag_cache:
        digest = hashlib.sha256()
        for name in ORT_RUNTIME_FILES:
            digest.update(name.encode() + b"\0" + (ORT_DIST / name).read_bytes())
        _ort_tag_cache.clear()
        _ort_tag_cache[stats] = digest.hexdigest()[:TAG_LENGTH]
    return _ort_tag_cache[stats]


def ort_base_url() -> str:
    if ORT_DIST.is_dir():
        try:
            return f"/web/ort/{ort_tag()}/"
        except OSError:  # a runtime file is missing: the untagged route still serves the rest
            return "/web/ort/"
    return f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ort_version()}/dist/"


def file_digest(path: Path) -> str:
    """The SHA-256 of a served file: its `<name>.sha256` sidecar's (the exported-file cache writes one),
    else computed."""
    from mobilesam.utils.digest import sha256_of_file

    try:
        return VerifiedFiles.sidecar(path).read_text().split()[0].strip().lower()
    except (OSError, IndexError):
        return sha256_of_file(path)


def decoder_url(path: Path) -> str:
    """The URL the page fetches a decoder file from: its digest prefix and name, so a browser may keep
    it for a year and a changed file is a new URL."""
    return f"/msam/models/{file_digest(path)[:TAG_LENGTH]}/{path.name}"


def page_head(config: dict) -> str:
    """<head> additions: the client config, the stylesheet and the entry module."""
    payload = json.dumps(config).replace("</", "<\\/")
    # Until main.js (a deferred module) has run, calls to window.msam.setImage are queued and replayed.
    stub = ("window.msam = window.msam || {_queue: [], "
            "setImage(...a) { this._queue.push(['setImage', a]); return Promise.resolve(false); }};")
    return (f"<script>window.MSAM_CONFIG = {payload};\n{stub}</script>\n"
            f'<link rel="stylesheet" href="/web/style.css">\n'
            f'<script type="module" src="/web/main.js"></script>\n')


EARLY_CONTROL = """<div id="msam-early" class="msam-early">
<label class="msam-early-pick">Choose a photo<input type="file" accept="image/*"></label>
<span class="msam-early-note">or drop it here: it is sent while the page loads</span>
</div>"""


def page_body() -> str:
    """The early upload control for the top of <body>: its markup and web/early.js, inline (it runs
    before any script is fetched; the stylesheet of page_head styles it)."""
    script = (WEB_DIR / "early.js").read_text()
    if "</" in script:
        raise ValueError("web/early.js must not contain '</' (it is written inside a <script> element)")
    return f"{EARLY_CONTROL}\n<script>{script}</script>\n"


def _compressed_copies(data: bytes) -> Dict[str, bytes]:
    """{content coding: bytes}: Brotli (Chromium sends `br` only over HTTPS) when the `brotli`
    package is there, and gzip."""
    out = {}
    try:
        import brotli

        out["br"] = brotli.compress(data, quality=9)
    except ImportError:
        pass
    out["gzip"] = gzip.compress(data, compresslevel=6)
    return out


def accepts_encoding(header: str, coding: str) -> bool:
    """Whether an Accept-Encoding header value allows `coding` (listed, and not with q=0)."""
    for part in header.split(","):
        name, *params = [p.strip() for p in part.split(";")]
        if name.lower() != coding:
            continue
        for param in params:
            if param.lower().startswith("q="):
                try:
                    return float(param[2:]) > 0
                except ValueError:
                    return False
        return True
    return False


class _MemoryFile:
    """A file's bytes as read at `mtime_ns`, and its compressed copies ({coding: bytes}) once made."""

    def __init__(self, mtime_ns: int, data: bytes) -> None:
        self.mtime_ns = mtime_ns
        self.data = data
        self.compressed: Dict[str, bytes] = {}
        self.compressing = False
        self.digest = ""  # its SHA-256 (VerifiedFiles)


class MemoryFiles:
    """Static files (the browser code, onnxruntime-web's runtime) served from memory, read once and
    again when a file's mtime changes, plus a compressed copy for browsers that accept it.

    onnxruntime-web's WebAssembly is 14.2 MB: Starlette's FileResponse sends it in 64 KB chunks at
    about 100 MB/s here (compiling it waits for those bytes), from memory it goes out about twice as
    fast, and Brotli makes it 2.7 MB (gzip 3.7 MB) for a real network. Compression runs once per file
    in a background thread at the lowest CPU priority (1.8 s for the wasm); until it is done the file
    goes out uncompressed.
    """

    MIN_COMPRESS = 1024

    def __init__(self, folder: Path, suffixes: Dict[str, str]) -> None:
        self.folder = folder
        self.suffixes = suffixes
        self._files: Dict[str, _MemoryFile] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobilesam-compress",
                                        initializer=lower_thread_priority)

    def _entry(self, name: str) -> Optional["_MemoryFile"]:
        if not SAFE_NAME.match(name) or Path(name).suffix not in self.suffixes:
            return None
        path = self.folder / name
        try:
            mtime = path.stat().st_mtime_ns
            with self._lock:
                entry = self._files.get(name)
            if entry is None or entry.mtime_ns != mtime:
                entry = _MemoryFile(mtime, path.read_bytes())
                with self._lock:
                    self._files[name] = entry
        except OSError:
            return None
        if len(entry.data) >= self.MIN_COMPRESS:
            with self._lock:  # submitted under the lock: whoever sees `compressing` set finds the job queued
                if not entry.compressing:  # once per version of the file
                    entry.compressing = True
                    self._pool.submit(self._compress, name, entry)
        return entry

    @staticmethod
    def _compress(name: str, entry: "_MemoryFile") -> None:
        try:
            entry.compressed.update(_compressed_copies(entry.data))
        except Exception as exc:  # serving uncompressed is always possible
            log.warning("cannot compress %s: %s", name, exc)

    def prepare(self, *names: str) -> None:
        """Read and start compressing these files now (at start-up), not on their first request."""
        for name in names:
            self._entry(name)

    def wait_compressed(self, timeout: float = 30.0) -> None:
        """Block until the compressions started so far are done (tests, benchmarks)."""
        self._pool.submit(lambda: None).result(timeout)

    def response(self, request: Request, name: str, cache_control: str = "public, max-age=3600") -> Optional[Response]:
        entry = self._entry(name)
        if entry is None:
            return None
        return encoded_response(request, entry, self.suffixes[Path(name).suffix], {"Cache-Control": cache_control})


def encoded_response(request: Request, entry: "_MemoryFile", media_type: str, headers: Dict[str, str]) -> Response:
    """`entry`'s bytes, in the first compressed copy the request accepts (else as they are)."""
    headers = {**headers, "Vary": "Accept-Encoding"}
    body = entry.data
    accept = request.headers.get("accept-encoding", "")
    for coding, packed in list(entry.compressed.items()):
        if accepts_encoding(accept, coding):
            headers["Content-Encoding"] = coding
            body = packed
            break
    return Response(body, media_type=media_type, headers=headers)


WEB_FILES = MemoryFiles(WEB_DIR, WEB_SUFFIXES)
ORT_FILES = MemoryFiles(ORT_DIST, ORT_SUFFIXES)


class VerifiedFiles:
    """Files with a `<name>.sha256` sidecar (the cached decoder exports), read and checked against it
    once, then served from memory: a file corrupted on disk is never served. Each is compressed once
    (Brotli, gzip) in a background thread at the lowest CPU priority, as `MemoryFiles` does; until
    then it goes out uncompressed. A float16 decoder's weights compress by about a tenth."""

    def __init__(self) -> None:
        self._data: Dict[Path, _MemoryFile] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobilesam-compress-models",
                                        initializer=lower_thread_priority)

    @staticmethod
    def sidecar(path: Path) -> Path:
        return path.with_name(path.name + ".sha256")

    def has_digest(self, path: Path) -> bool:
        return path in self._data or self.sidecar(path).is_file()

    def entry(self, path: Path) -> Optional[_MemoryFile]:
        """The verified file (bytes, SHA-256 in `digest`, compressed copies once made), or None."""
        with self._lock:
            if path in self._data:
                return self._data[path]
            try:
                expected = self.sidecar(path).read_text().split()[0].strip().lower()
                data = path.read_bytes()
            except (OSError, IndexError):
                expected, data = None, b""
            if expected is None or hashlib.sha256(data).hexdigest() != expected:
                log.warning("%s does not match its digest %s; not serving it", path, self.sidecar(path).name)
                return None
            entry = _MemoryFile(0, data)
            entry.digest = expected
            self._data[path] = entry
            # submitted under the lock: a thread that finds the entry (a request, then
            # wait_compressed) finds its compression queued ahead of anything it submits
            self._pool.submit(MemoryFiles._compress, path.name, entry)
        return entry

    def read(self, path: Path) -> Optional[bytes]:
        entry = self.entry(path)
        return None if entry is None else entry.data

    def prepare(self, paths) -> None:
        """Verify and start compressing these files now (at start-up), in the background."""
        for path in paths:
            self._pool.submit(self.entry, Path(path))

    def wait_compressed(self, timeout: float = 60.0) -> None:
        """Block until the compressions started so far are done (tests, benchmarks)."""
        self._pool.submit(lambda: None).result(timeout)


MODEL_FILES = VerifiedFiles()


def make_routes(models: Callable[[], Dict[str, Path]], embedding_bytes: Callable[[str, str, str], Optional[bytes]],
                image_path: Callable[[str], Optional[Path]],
                encode_resized: Optional[Callable[[bytes, str, str], dict]] = None,
                ensure_stored: Optional[Callable[[str], Optional[bool]]] = None,
                health: Optional[Callable[[], dict]] = None,
                decode_prompt: Optional[Callable[[str, bytes], Optional[bytes]]] = None):
    """Starlette routes; the callables look up decoder files, embeddings (model, image id, wire format
    "f16" / "u8" -> bytes) and stored images, encode a resized upload (bytes, width, height -> client
    info; ImageLoadError for bad input), (`ensure_stored`, ImageStore.ensure_durable) write an
    image to the store now: True once on disk, False if it cannot be, None for an unknown image, and
    (`health`, Engine.health) tell GET /msam/health how the server is doing, and (`decode_prompt`,
    Service.decode_for_page) decode one prompt for a page whose decoder is still loading (image id,
    JSON bytes -> mask_codec bytes; None for an image not encoded; ValueError for a bad prompt)."""

    ORT_FILES.prepare(*ORT_RUNTIME_FILES)

    async def web_file(request: Request):
        return await run_in_threadpool(WEB_FILES.response, request, request.path_params["name"]) or _not_found()

    async def ort_file(request: Request):
        return await run_in_threadpool(ORT_FILES.response, request, request.path_params["name"]) or _not_found()

    async def tagged_ort_file(request: Request):
        try:
            current = await run_in_threadpool(ort_tag)
        except OSError:
            current = None
        if request.path_params["tag"] != current:  # another runtime's URL: never cache today's bytes under it
            return _not_found("no such onnxruntime-web runtime: reload the page")
        return await run_in_threadpool(ORT_FILES.response, request, request.path_params["name"], IMMUTABLE) \
            or _not_found()

    verified = MODEL_FILES
    verified.prepare(path for path in models().values() if verified.has_digest(path))

    async def model_file(request: Request):
        path = models().get(request.path_params["name"])
        if path is None or not path.is_file():
            return _not_found()
        tag = request.path_params.get("digest")
        if not verified.has_digest(path):  # not an export of the cache (no sidecar): served as it is
            return FileResponse(path, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})
        entry = await run_in_threadpool(verified.entry, path)
        if entry is None:
            return PlainTextResponse("the decoder file on the server is corrupted; restarting the app rebuilds it",
                                     status_code=503)
        etag = f'"{entry.digest}"'
        # under its digest the URL names these bytes for good; otherwise the page revalidates them
        cache = IMMUTABLE if tag == entry.digest[:TAG_LENGTH] else "no-cache"
        headers = {"Cache-Control": cache, "ETag": etag}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return encoded_response(request, entry, "application/octet-stream", headers)

    def embedding_route(fmt: str):
        dtype = "float16" if fmt == "f16" else "uint8-per-channel-affine;v=1"

        async def embedding(request: Request):
            data = await run_in_threadpool(embedding_bytes, request.path_params["model"],
                                           request.path_params["image_id"], fmt)
            if data is None:
                return _not_found("embedding not found: encode the image first")
            return Response(data, media_type="application/octet-stream",
                            headers={"X-Embedding-Shape": "1,256,64,64", "X-Embedding-Dtype": dtype,
                                     "Cache-Control": "private, max-age=3600"})

        return embedding

    def image_bytes(image_id: str) -> Optional[bytes]:
        path = image_path(image_id)  # the store checks the file against its content id
        try:
            return None if path is None else path.read_bytes()
        except OSError:  # pruned meanwhile
            return None

    async def image(request: Request):
        data = await run_in_threadpool(image_bytes, request.path_params["image_id"])
        if data is None:
            return _not_found()
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def encode(request: Request):
        from .engine import EncoderBusy
        from .images import ImageLoadError
        from .resized_upload import MAX_RESIZED_BYTES

        start = time.perf_counter()
        data = await read_body(request, MAX_RESIZED_BYTES)
        if data is None:
            return JSONResponse({"error": f"the resized photo is over {MAX_RESIZED_BYTES / 2**20:.0f} MiB"},
                                status_code=413)
        received = time.perf_counter()
        try:
            info = await run_in_threadpool(encode_resized, data, request.query_params.get("width"),
                                           request.query_params.get("height"))
        except ImageLoadError as exc:
            log.info("refused a resized upload: %s", exc)
            return JSONResponse({"error": f"Cannot use this file: {exc}"}, status_code=400)
        except EncoderBusy as exc:
            log.info("refused a resized upload: the encoder's queue is full (%d ahead)", exc.ahead)
            return JSONResponse({"error": f"The server is busy: {exc.ahead} images are ahead of yours in the "
                                          "encoder's queue. Please try again in a few seconds."}, status_code=503)
        # where the server's time went, for the page's resource timings (bench/first_visit.py)
        timing = (f"receive;dur={(received - start) * 1000:.1f}, encode;dur={info.get('encode_ms', 0):.1f}, "
                  f"total;dur={(time.perf_counter() - start) * 1000:.1f}")
        return JSONResponse(info, headers={"Cache-Control": "no-store", "Server-Timing": timing})

    extra = [Route("/msam/encode", encode, methods=["POST"])] if encode_resized is not None else []

    async def decode(request: Request):
        """POST: the masks of one prompt, while the page's own decoder loads (web/bridge.js)."""
        data = await read_body(request, MAX_PROMPT_BYTES)
        if data is None:
            return JSONResponse({"error": f"the prompt is over {MAX_PROMPT_BYTES} bytes"}, status_code=413)
        try:
            body = await run_in_threadpool(decode_prompt, request.path_params["image_id"], data)
        except ValueError as exc:
            return JSONResponse({"error": f"Invalid prompt: {exc}"}, status_code=400)
        if body is None:
            return JSONResponse({"error": "embedding not found: encode the image first"}, status_code=404)
        headers = {"Cache-Control": "no-store", "X-Masks-Format": "mslr;v=1"}
        if accepts_encoding(request.headers.get("accept-encoding", ""), "gzip"):
            body = gzip.compress(body, compresslevel=6)
            headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(body, media_type="application/octet-stream", headers=headers)

    if decode_prompt is not None:
        extra.append(Route("/msam/decode/{image_id}", decode, methods=["POST"]))

    async def store_image(request: Request):
        """POST: the page asks before it shows a share link; 200 only once the image is on disk."""
        image_id = request.path_params["image_id"]
        stored = None if ensure_stored is None else await run_in_threadpool(ensure_stored, image_id)
        if stored is None:
            return _not_found("image not found: upload it again")
        if not stored:
            return PlainTextResponse("the server cannot store images now, so links to uploads are unavailable",
                                     status_code=503)
        return Response(json.dumps({"image_id": image_id, "stored": True}), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    async def health_route(request: Request):
        """GET: JSON for load balancers and benchmarks (Engine.health). The server answers requests before
        its fast encoder is ready (with PyTorch's meanwhile): `encoder.ready` tells when that is over."""
        body = await run_in_threadpool(health) if health is not None else {}
        return Response(json.dumps({"status": "ok", **body}), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    return extra + [
        Route("/msam/health", health_route),
        Route("/msam/store/{image_id}", store_image, methods=["POST"]),
        Route("/web/ort/{tag}/{name}", tagged_ort_file),
        Route("/web/ort/{name}", ort_file),
        Route("/web/{name}", web_file),
        Route("/msam/models/{digest}/{name}", model_file),
        Route("/msam/models/{name}", model_file),
        Route("/msam/embedding/{model}/{image_id}.f16", embedding_route("f16")),
        Route("/msam/embedding/{model}/{image_id}.u8", embedding_route("u8")),
        Route("/msam/image/{image_id}.png", image),
    ]


async def read_body(request: Request, limit: int) -> Optional[bytes]:
    """The request's body, or None once it is over `limit` bytes (not read further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _not_found(message: str = "not found") -> PlainTextResponse:
    return PlainTextResponse(message, status_code=404)


def middleware(head: Optional[str] = None, body: str = "") -> list:
    """The isolation headers on every response; with `head` (page_head's) and `body` (page_body's),
    those written into "/"."""
    extra = [Middleware(EarlyPageMiddleware, head=head, body=body)] if head else []
    return [Middleware(IsolationHeadersMiddleware)] + extra
