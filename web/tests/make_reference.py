"""Writes tests/reference.json, the expected values the node tests check against.

Generated once with PyTorch (torch 2.13 CPU, x86 AVX-512) and pycocotools; run from web/:
    python tests/make_reference.py
- "postprocess": Sam.postprocess_masks (F.interpolate bilinear, align_corners=False,
  256 -> 1024, crop, -> H x W) of synthetic low-res logits that masks.test.mjs rebuilds
  with the same formula (exact in float32): counts, a FNV-1a hash of the 0/1 mask and
  sample logits.
- "rle": pycocotools.mask.encode(np.asfortranarray(m)) of masks the tests rebuild.
- "f16": numpy float16 -> float32 of all 65536 bit patterns (NaN canonicalised), hashed.
"""
import json, numpy as np, torch, torch.nn.functional as F
from pycocotools import mask as mu

def fnv(b):
    h = 0x811c9dc5
    for x in b:
        h ^= int(x); h = (h * 0x01000193) & 0xffffffff
    return h

def lowres():
    i = np.arange(256)[:, None]; j = np.arange(256)[None, :]
    planes = []
    for k in range(4):
        v = (3000 - ((i - 120 - 9*k) ** 2 + (j - 130 + 7*k) ** 2)) / 64 + ((i * 37 + j * 91 + k * 13) % 97 - 48) / 16
        planes.append(v.astype(np.float32))
    return np.stack(planes)[None]  # 1,4,256,256

L = torch.from_numpy(lowres())
out = {"postprocess": []}
def prep(w, h):
    s = 1024 / max(h, w)
    return int(h * s + 0.5), int(w * s + 0.5)
for (w, h, k) in [(800, 600, 0), (333, 500, 1), (1500, 1000, 2), (1024, 1024, 3), (2000, 900, 1), (301, 2000, 2)]:
    ih, iw = prep(w, h)
    up = F.interpolate(L, (1024, 1024), mode="bilinear", align_corners=False)
    crop = up[..., :ih, :iw]
    full = F.interpolate(crop, (h, w), mode="bilinear", align_corners=False)[0, k].numpy()
    c = crop[0, k].numpy()
    m = (full > 0).astype(np.uint8)
    rng = np.random.default_rng(w + h)
    samples = [[int(y), int(x), float(full[y, x])] for y, x in zip(rng.integers(0, h, 12), rng.integers(0, w, 12))]
    csamples = [[int(y), int(x), float(c[y, x])] for y, x in zip(rng.integers(0, ih, 8), rng.integers(0, iw, 8))]
    out["postprocess"].append(dict(width=w, height=h, index=k, input_width=iw, input_height=ih,
        area=int(m.sum()), gt1=int((full > 1).sum()), gtm1=int((full > -1).sum()),
        fnv=fnv(m.tobytes()), crop_area=int((c > 0).sum()), crop_fnv=fnv((c > 0).astype(np.uint8).tobytes()),
        samples=samples, crop_samples=csamples))

# RLE
def masks():
    res = {}
    res["zeros_4x5"] = np.zeros((4, 5), np.uint8)
    res["ones_4x5"] = np.ones((4, 5), np.uint8)
    m = np.zeros((3, 3), np.uint8); m[0, 0] = 1; res["first_3x3"] = m
    y, x = np.mgrid[0:13, 0:17]; res["pattern_13x17"] = (((x * 7 + y * 3) % 5) < 2).astype(np.uint8)
    y, x = np.mgrid[0:30, 0:40]; res["disc_30x40"] = (((x - 22) ** 2 + (y - 14) ** 2) < 120).astype(np.uint8)
    m = np.zeros((300, 400), np.uint8); m[20:280, 50:330] = 1; m[100:120, 100:110] = 0; res["rect_300x400"] = m
    y, x = np.mgrid[0:257, 0:513]; res["rings_257x513"] = (((np.floor(np.sqrt((x - 300) ** 2 + (y - 100) ** 2)).astype(np.int64) // 17) % 2) == 1).astype(np.uint8)
    return res
out["rle"] = {}
for name, m in masks().items():
    e = mu.encode(np.asfortranarray(m))
    out["rle"][name] = {"counts": e["counts"].decode(), "size": list(map(int, e["size"])), "area": int(mu.area(e)),
                        "toBbox": [float(v) for v in mu.toBbox(e)]}

# f16 table checksum
allh = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
bits = allh.view(np.uint32).copy()
bits[np.isnan(allh)] = 0x7fc00000
out["f16_bits_sum"] = int(bits.astype(np.uint64).sum() % (1 << 32))
out["f16_fnv"] = fnv(bits.astype('<u4').tobytes())
out["_generated_by"] = "web/tests/make_reference.py (torch %s, pycocotools)" % torch.__version__
json.dump(out, open(__import__("os").path.join(__import__("os").path.dirname(__file__), "reference.json"), "w"), indent=1)
