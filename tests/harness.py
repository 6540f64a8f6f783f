"""Running the project inside a host's own code, in a process of its own: the hosts' `modules` packages differ
from one another and from the A1111 stand-in that the in-process WebUI tests import."""
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_harness(script: str, *args, python=sys.executable) -> tuple:
    """Run tests/<script>; (the JSON object it printed last, its console). A host's progress bars may share
    that line of stdout (carriage returns, no newline), so the object is read from its first `{"`."""
    done = subprocess.run([str(python), str(Path(__file__).parent / script), *map(str, args)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if '{"' in line]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1][lines[-1].index('{"'):]), done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def enter_host(root) -> None:
    """In the harness: the host's tree first on sys.path, then the repository; one torch thread; the CUDA
    torchvision wheel made importable beside the CPU torch (skip_tuning_lab.comfy_host says why)."""
    sys.path[:0] = [str(root), str(REPO)]
    import torch

    from skip_tuning_lab.comfy_host import declare_torchvision_ops
    torch.set_num_threads(1)
    declare_torchvision_ops()


def hooks_left(module) -> int:
    """Forward hooks and pre-hooks on `module` and everything below it, and the modules Skip Tuning tunes."""
    from skip_tuning_core.hooks import tuned_modules
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in module.modules()) + tuned_modules(module)


def register(name: str, module: types.ModuleType) -> types.ModuleType:
    """`module` importable as `name` and set on its parent package, as an import would leave it."""
    parent, _, child = name.rpartition(".")
    sys.modules[name] = module
    if parent:
        setattr(importlib.import_module(parent), child, module)
    return module


def stand_in(name: str) -> types.ModuleType:
    """An empty module registered as `name` (a host's `modules.shared`, say) for the harness to fill."""
    return register(name, types.ModuleType(name))


def stand_in_from_a1111(name: str) -> types.ModuleType:
    """`modules.<leaf>` from the A1111 stand-in (tests/webui_standin, each file citing what it mirrors), for a
    host that keeps A1111's API there (the Forge forks' `modules.scripts`, say) but cannot import its own."""
    leaf = name.rpartition(".")[2]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "webui_standin" / "modules" / f"{leaf}.py")
    module = register(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def load_entry_point():
    """scripts/skip_tuning.py imported as a WebUI does: by path, with the extension root on sys.path."""
    spec = importlib.util.spec_from_file_location("skip_tuning.py", REPO / "scripts" / "skip_tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
