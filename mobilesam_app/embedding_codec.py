"""Wire formats of an image embedding (1×256×64×64) sent to the browser.

``.f16``: raw little-endian float16, 2,097,152 bytes (version-less, the original format).

``.u8`` (version 1): per-channel affine uint8, 1,050,640 bytes, little-endian:

=========  ==========================  =================================================
offset     content                     meaning
=========  ==========================  =================================================
0          ``b"MSAM"``                 magic
4          uint8 = 1                   format version
5          uint8 = 1                   encoding: per-channel affine uint8
6          uint16 C, uint16 H, uint16 W  shape (256, 64, 64)
12         4 zero bytes                (alignment)
16         float32[C] scale            value = offset[c] + scale[c] * q
16 + 4C    float32[C] offset
16 + 8C    uint8[C·H·W] q              channel-major, as the embedding is laid out
=========  ==========================  =================================================

Each channel's 4096 values are mapped linearly onto 0..255 between their minimum and maximum, so
the error is at most half a step (range/510). On the goldens (decoder run on the dequantized
embeddings with the golden prompts) the masks keep IoU >= 0.995 against the float32 ones
(tests/test_embedding_codec.py), so the app sends this for MobileSAM; models it was not checked on
keep float16 (`wire_format`).
"""
from __future__ import annotations

import struct

import numpy as np

MAGIC = b"MSAM"
VERSION = 1
ENCODING_U8_AFFINE = 1
HEADER = struct.Struct("<4sBBHHH4x")  # 16 bytes
SHAPE = (256, 64, 64)
F16_BYTES = int(np.prod(SHAPE)) * 2
U8_BYTES = HEADER.size + 8 * SHAPE[0] + int(np.prod(SHAPE))
# Models whose masks were checked against the goldens with the uint8 embedding.
U8_MODELS = frozenset({"vit_t"})


def wire_format(model_type: str) -> str:
    """The suffix the app serves a model's embeddings in: "u8" where checked, else "f16"."""
    return "u8" if model_type in U8_MODELS else "f16"


def encode_f16(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype=np.float32).reshape(SHAPE).astype("<f2").tobytes()


def decode_f16(data: bytes) -> np.ndarray:
    if len(data) != F16_BYTES:
        raise ValueError(f"a float16 embedding has {F16_BYTES} bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape((1,) + SHAPE)


def quantize_u8(embedding: np.ndarray):
    """(q uint8 [C,H·W], scale float32 [C], offset float32 [C]) of a 1×256×64×64 embedding."""
    x = np.asarray(embedding, dtype=np.float32).reshape(SHAPE[0], -1)
    lo = x.min(axis=1)
    hi = x.max(axis=1)
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint((x - lo[:, None]) / safe[:, None]), 0, 255).astype(np.uint8)
    return q, scale, lo.astype(np.float32)


def encode_u8(embedding: np.ndarray) -> bytes:
    q, scale, offset = quantize_u8(embedding)
    header = HEADER.pack(MAGIC, VERSION, ENCODING_U8_AFFINE, *SHAPE)
    return header + scale.astype("<f4").tobytes() + offset.astype("<f4").tobytes() + q.tobytes()


def decode_u8(data: bytes) -> np.ndarray:
    """The float32 1×256×64×64 embedding of `.u8` bytes (what web/embedding.js computes)."""
    if len(data) < HEADER.size:
        raise ValueError("truncated embedding")
    magic, version, encoding, c, h, w = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or encoding != ENCODING_U8_AFFINE:
        raise ValueError(f"not a version-{VERSION} uint8 embedding")
    if (c, h, w) != SHAPE or len(data) != U8_BYTES:
        raise ValueError(f"embedding shape {(c, h, w)} / {len(data)} bytes, expected {SHAPE} / {U8_BYTES}")
    scale = np.frombuffer(data, "<f4", c, HEADER.size)
    offset = np.frombuffer(data, "<f4", c, HEADER.size + 4 * c)
    q = np.frombuffer(data, np.uint8, c * h * w, HEADER.size + 8 * c).reshape(c, -1)
    out = q.astype(np.float32) * scale[:, None] + offset[:, None]
    return out.reshape((1,) + SHAPE)


def transcode(data: bytes, fmt: str) -> bytes:
    """`.f16` bytes (what the app keeps ready) in wire format `fmt`."""
    if fmt == "f16":
        return data
    if fmt == "u8":
        return encode_u8(decode_f16(data))
    raise ValueError(f"unknown embedding format {fmt!r}")
