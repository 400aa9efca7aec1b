"""ZeroGPU support: `gpu_task` marks the functions that run the models, for Hugging Face Spaces on
ZeroGPU hardware (a GPU attached per call). With the `spaces` package (present on every Space, not a
dependency of this project) it is `spaces.GPU`, which is itself a no-op outside ZeroGPU; without
it, the function is returned unchanged."""
from typing import Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable)


def gpu_task(fn: F, duration: Optional[int] = None) -> F:
    """`spaces.GPU(fn)` (with `duration` seconds, the most one call may hold the GPU) when `spaces`
    is importable; else `fn` itself."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn) if duration is None else spaces.GPU(duration=duration)(fn)
