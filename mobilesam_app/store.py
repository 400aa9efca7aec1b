"""Content-addressed storage of the images people upload, and a bounded embedding cache.

Image ids are the first 32 hex digits (128 bits) of the SHA-256 of the image's RGB pixels
and size: the same picture always gets the same id, and ids cannot be enumerated to reach
other people's uploads.
"""
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, Generic, Optional, TypeVar

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
WRITE_RETRY_S = 60.0  # after a failed write, the store skips writing for this long
STALE_TEMP_S = 3600.0  # a temporary file this old was left by a writer that crashed
K = TypeVar("K")
V = TypeVar("V")


def image_id_of(image: np.ndarray) -> str:
    """Content id of a uint8 H×W×3 image: 32 hex digits."""
    digest = hashlib.sha256()
    digest.update(f"{image.shape[0]}x{image.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:32]


def is_image_id(value: object) -> bool:
    return isinstance(value, str) and bool(IMAGE_ID_RE.match(value))


class ImageStore:
    """Uploaded images as PNG files named by content id, bounded in total bytes and age.

    Writes are atomic and durable: a temporary file, fsynced, renamed, and the folder fsynced; a
    crash at any moment leaves either the whole file or none (and maybe a temporary file, removed
    later by `prune`). Several processes (replicas) may share the folder: names are content ids, so
    a concurrent write of the same id writes the same pixels. A share link is handed out only once
    `ensure_durable` says its image is on disk. When the folder is not writable the store keeps
    working without persistence (shared links then only work for the examples) and logs a warning once.

    `put_later` writes in a background thread at the lowest CPU priority, once the store has been
    quiet for `write_delay_s` (`defer_writes`, which the engine calls when it encodes, starts that
    wait again; at most `max_defer_s`, or none once `max_pending_bytes` of images wait): PNG
    compression of a 1800×1200 photo takes ~0.1 s, and writing it right after the upload's reply
    made the page's first mask ~0.1 s later on 2 cores (bench/first_mask.py); a write during the
    next photo's encode slows that one down. Until the file is written, `get` returns the image
    from memory and `path_of` has it written at once and waits for it. A file this store wrote or
    checked is not decoded again to check it while its bytes are unchanged.
    """

    def __init__(self, root: Path, max_bytes: int = 512 * 2**20, max_age_s: float = 7 * 24 * 3600,
                 write_delay_s: float = 2.0, max_defer_s: float = 30.0,
                 max_pending_bytes: int = 128 * 2**20) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._warned = False
        self._failed_at = -float("inf")
        self._pending: Dict[str, _PendingWrite] = {}
        self._checked: Dict[str, str] = {}  # image id -> SHA-256 of its file when written or verified
        self._write_lock = threading.Lock()
        self.write_delay_s = write_delay_s
        self.max_defer_s = max_defer_s
        self.max_pending_bytes = max_pending_bytes
        self._quiet_from = 0.0  # time.monotonic() before which delayed writes wait
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._warn(f"image store {self.root} is unavailable ({exc}); shared links to uploads are disabled")

    def has(self, image_id: str) -> bool:
        """Whether `image_id` is stored or being written (not verified: a cheap check)."""
        return image_id in self._pending or self._file(image_id) is not None

    def path_of(self, image_id: str, timeout: float = 30.0) -> Optional[Path]:
        """The stored file of `image_id` if its pixels still match the id (a delayed write is done
        now, and waited for); a corrupted file is removed."""
        pending = self._pending.get(image_id)
        if pending is not None:
            pending.needed.set()
            pending.done.wait(timeout)
        return self._verified_file(image_id)

    def _verified_file(self, image_id: str) -> Optional[Path]:
        path = self._file(image_id)
        if path is None:
            return None
        known = self._checked.get(image_id)
        if known is not None and known == _file_digest(path):
            return path
        if self._load_verified(path, image_id) is None:
            return None
        self._remember(path, image_id)
        return path

    def _remember(self, path: Path, image_id: str) -> None:
        """Note the file's bytes as checked (or written here): while they are unchanged (SHA-256 of
        the file, ~5 ms) the PNG need not be decoded again (~40 ms) to check its pixels."""
        digest = _file_digest(path)
        if digest is not None:
            self._checked[image_id] = digest

    def is_durable(self, image_id: str) -> bool:
        """Whether `image_id`'s file is written (atomically, fsynced) and no write of it is pending: a
        link to it survives a crash of this process (a cheap check, not verified)."""
        return image_id not in self._pending and self._file(image_id) is not None

    def ensure_durable(self, image_id: str, timeout: float = 30.0) -> Optional[bool]:
        """Write `image_id` now if its write is pending, and wait for it: True once its file is on disk
        (fsynced, pixels matching the id), False when it could not be written (the store is unusable),
        None when this store does not know the image. What the page asks before it shows a share link."""
        if not is_image_id(image_id):
            return None
        known = image_id in self._pending
        if self.path_of(image_id, timeout) is not None:
            return True
        return False if known else None

    def defer_writes(self) -> None:
        """Busy now (an encode): delayed writes wait until `write_delay_s` from now."""
        self._quiet_from = max(self._quiet_from, time.monotonic() + self.write_delay_s)

    def put_later(self, image_id: str, image: np.ndarray) -> None:
        """`put` in a background thread at the lowest CPU priority, once the store has been quiet for
        `write_delay_s` (or as soon as `path_of` asks for the file); meanwhile `get`/`has`/`path_of`
        know the image."""
        if not is_image_id(image_id):
            raise ValueError(f"not an image id: {image_id!r}")
        with self._lock:
            if image_id in self._pending:
                return
            pending = self._pending[image_id] = _PendingWrite(image)
            crowded = sum(p.image.nbytes for p in self._pending.values()) > self.max_pending_bytes
        self.defer_writes()

        def write():
            lower_thread_priority()
            if not crowded:
                self._wait_until_quiet(pending)
            try:
                with self._write_lock:  # one PNG compression at a time
                    self.put(image_id, image)
            except Exception as exc:  # never lose the server to a failed write
                log.warning("storing image %s failed: %s", image_id, exc)
            finally:
                with self._lock:
                    self._pending.pop(image_id, None)
                pending.done.set()

        threading.Thread(target=write, name="mobilesam-store", daemon=True).start()

    def _wait_until_quiet(self, pending: "_PendingWrite") -> None:
        """Until no `defer_writes` for `write_delay_s`, the file is asked for, or `max_defer_s` passed."""
        give_up = time.monotonic() + self.max_defer_s
        while True:
            left = min(self._quiet_from, give_up) - time.monotonic()
            if left <= 0 or pending.needed.wait(left):
                return

    def wait_writes(self, timeout: float = 30.0) -> None:
        """Do the delayed writes now and block until they are done."""
        for pending in list(self._pending.values()):
            pending.needed.set()
            pending.done.wait(timeout)

    def _file(self, image_id: str) -> Optional[Path]:
        if not is_image_id(image_id):
            return None
        path = self.root / f"{image_id}.png"
        return path if path.is_file() else None

    def put(self, image_id: str, image: np.ndarray) -> Optional[Path]:
        """Store `image` under `image_id` (no-op if present). Returns the path, or None if not stored."""
        if not is_image_id(image_id):
            raise ValueError(f"not an image id: {image_id!r}")
        existing = self._verified_file(image_id)
        if existing is not None:
            try:
                os.utime(existing)  # refresh its age
            except OSError:
                pass
            return existing
        if time.monotonic() - self._failed_at < WRITE_RETRY_S:  # a full or read-only disk: don't retry on every call
            return None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                Image.fromarray(image).save(f, format="PNG", compress_level=1)
                f.flush()
                os.fsync(f.fileno())  # the bytes are on disk before the name points at them
            path = self.root / f"{image_id}.png"
            os.replace(tmp, path)
            _fsync_dir(self.root)  # and the name itself survives a crash
            self._remember(path, image_id)
        except OSError as exc:
            self._failed_at = time.monotonic()
            self._warn(f"cannot write to image store {self.root} ({exc}); continuing without storing uploads")
            try:
                os.unlink(tmp)
            except (OSError, UnboundLocalError):
                pass
            return None
        self.prune()
        return path

    def get(self, image_id: str) -> Optional[np.ndarray]:
        pending = self._pending.get(image_id)
        if pending is not None:
            return pending.image
        path = self._file(image_id)
        return None if path is None else self._load_verified(path, image_id)

    @staticmethod
    def _load_verified(path: Path, image_id: str) -> Optional[np.ndarray]:
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            log.warning("stored image %s is unreadable; removing it", path.name)
            _remove(path)
            return None
        if image_id_of(image) != image_id:  # corrupted on disk: never serve it
            log.warning("stored image %s does not match its id; removing it", path.name)
            _remove(path)
            return None
        return image

    def prune(self) -> None:
        """Drop files older than max_age_s, then the oldest until the total is within max_bytes."""
        with self._lock:
            try:
                entries = [(p, p.stat()) for p in self.root.glob("*.png")]
            except OSError:
                return
            now = time.time()
            self._remove_stale_temporaries(now)
            entries.sort(key=lambda e: e[1].st_mtime)
            total = sum(st.st_size for _, st in entries)
            for path, st in entries:
                if now - st.st_mtime > self.max_age_s or total > self.max_bytes:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError:
                        continue
                    self._checked.pop(path.stem, None)
                    total -= st.st_size

    def _remove_stale_temporaries(self, now: float) -> None:
        """Half-written files a crashed process (this one or another replica on the same folder) left;
        never renamed, so no link names them."""
        for tmp in self.root.glob("*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_TEMP_S:
                    tmp.unlink()
            except OSError:
                pass

    def _warn(self, message: str) -> None:
        if not self._warned:
            log.warning(message)
            self._warned = True


class _PendingWrite:
    """An image waiting to be written: `needed` cuts the delay short, `done` is set once written."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.needed = threading.Event()
        self.done = threading.Event()


def lower_thread_priority(nice: int = 19) -> None:
    """Run the calling thread at a lower CPU priority (Linux: threads have their own nice value, and
    threads it starts inherit it): by default the lowest, so that background work (PNG writes,
    compression) yields to encodes and requests."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: the directory entry is only on disk once the
    directory is fsynced). Not possible everywhere (Windows): skipped there."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_digest(path: Path) -> Optional[str]:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


class LRUCache(Generic[K, V]):
    """Thread-safe LRU bounded by the summed `size_of` its values (bytes)."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: "OrderedDict[K, V]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> Optional[V]:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        size = self._size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._size_of(self._items.pop(key))
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size_of(old)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items
