"""SHA-256 digests of files and of a module's weights: the one place the project hashes them."""
import hashlib
import os
from typing import Union

import torch

PathLike = Union[str, "os.PathLike[str]"]


def sha256_of_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file as 64 lowercase hex digits, read in `chunk`-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the module's parameters and buffers (names, shapes, bytes as float32)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.float().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
    return digest.hexdigest()
