"""gpu_task: spaces.GPU when the `spaces` package is importable, the function itself otherwise."""
import sys
import types

from mobilesam_app.gpu import gpu_task


def test_without_spaces_the_function_is_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError

    def work(x):
        return x + 1

    assert gpu_task(work) is work


def test_with_spaces_the_function_is_wrapped_by_spaces_gpu(monkeypatch):
    calls = []

    def GPU(fn=None, duration=None):  # the real decorator's two forms
        if fn is None:
            return lambda f: GPU(f, duration)
        calls.append((fn.__name__, duration))
        return lambda *a: ("on gpu", fn(*a))

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))

    def work(x):
        return x + 1

    assert gpu_task(work)(1) == ("on gpu", 2)
    assert gpu_task(work, duration=120)(2) == ("on gpu", 3)
    assert calls == [("work", None), ("work", 120)]
