"""The library installs on its own: `pip wheel .` holds the `mobilesam` package only, no module of
it imports gradio, and importing every library module loads no gradio (the app's server code is
the separate `mobilesam_app` package)."""
import ast
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_holds_the_library_only_and_nothing_in_it_imports_gradio(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT),
                    "-w", str(tmp_path)], check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("mobilesam-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "mobilesam/predictor.py" in modules and "mobilesam/accel/encoder.py" in modules
    assert all(n.startswith("mobilesam/") for n in modules), [n for n in modules if not n.startswith("mobilesam/")]
    for name in modules:
        tree = ast.parse(zipfile.ZipFile(wheel).read(name))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"gradio", "gradio_client", "mobilesam_app"}, name


def test_importing_every_library_module_loads_no_gradio():
    code = ("import pkgutil, sys, importlib, mobilesam\n"
            "for m in pkgutil.walk_packages(mobilesam.__path__, 'mobilesam.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('gradio', 'mobilesam_app')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
