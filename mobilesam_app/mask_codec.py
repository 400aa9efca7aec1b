"""Wire format of a prompt's masks decoded on the server for the page (POST /msam/decode/<image id>):
what the page's own decoder gives (iou predictions [4], low-res logits [4,256,256] of all four mask
tokens), sent while that decoder is still loading. Little-endian, version 1:

=========  ==========================  =================================================
offset     content                     meaning
=========  ==========================  =================================================
0          ``b"MSLR"``                 magic
4          uint8 = 1                   format version
5          uint8 = 1                   encoding: float16 logits, byte planes
6          uint16 M, uint16 H, uint16 W  shape (4, 256, 256)
12         4 zero bytes                (alignment)
16         float32[M] scores           iou predictions, exact
16 + 4M    uint8[M·H·W] high bytes     of the float16 logits, in order
16+4M+MHW  uint8[M·H·W] low bytes      of the same values, in the same order
=========  ==========================  =================================================

524,320 bytes before HTTP compression; the byte planes (high bytes first) let gzip take ~20 % more
off than interleaved float16 (361 KB against 461 KB on the stand-in weights' logits). float16 keeps
the masks: IoU >= 0.999 against the float32 logits on the sample photos (tests/test_page_decode.py).
Rounding logits to a quarter in int8 (30 KB) lost up to a third of a mask there (IoU 0.74), a scale
per mask 2 % (0.980). The page shows these masks until its own decoder is ready, then decodes the
same prompts itself (web/bridge.js).
"""
from __future__ import annotations

import struct
from typing import Tuple

import numpy as np

MAGIC = b"MSLR"
VERSION = 1
ENCODING = 1  # float16 byte planes
_HEADER = struct.Struct("<4sBBHHH4x")


def encode_low_res(scores: np.ndarray, logits: np.ndarray) -> bytes:
    """scores [M] and logits [M,H,W] (float) -> the bytes above."""
    logits = np.asarray(logits, np.float32)
    m, h, w = logits.shape
    scores = np.asarray(scores, "<f4").reshape(m)
    pairs = logits.astype("<f2").view(np.uint8).reshape(-1, 2)  # (low, high) per value
    return _HEADER.pack(MAGIC, VERSION, ENCODING, m, h, w) + scores.tobytes() + pairs[:, 1].tobytes() \
        + pairs[:, 0].tobytes()


def decode_low_res(data: bytes) -> Tuple[np.ndarray, np.ndarray]:
    """The bytes above -> (scores [M] float32, logits [M,H,W] float32). ValueError if they are not that."""
    if len(data) < _HEADER.size:
        raise ValueError("too short for masks")
    magic, version, encoding, m, h, w = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or encoding != ENCODING:
        raise ValueError("not masks of format version 1")
    n = m * h * w
    if len(data) != _HEADER.size + 4 * m + 2 * n:
        raise ValueError(f"{len(data)} bytes for masks of shape {m}x{h}x{w}")
    scores = np.frombuffer(data, "<f4", m, _HEADER.size).astype(np.float32)
    planes = np.frombuffer(data, np.uint8, 2 * n, _HEADER.size + 4 * m)
    pairs = np.stack([planes[n:], planes[:n]], axis=1)  # back to (low, high)
    return scores, pairs.reshape(-1).view("<f2").astype(np.float32).reshape(m, h, w)
