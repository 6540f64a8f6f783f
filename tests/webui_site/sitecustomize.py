"""Run by Python at start-up in every WebUI that tests/webui_apps.py starts (this folder is its PYTHONPATH).

One torch thread (shared 2-core machines: two threads can make a tiny forward 100x slower under load), and
PyPI's CUDA torchvision wheel made importable beside CPU torch: the WebUIs import torchvision at start-up, and
its compiled ops fail to register there (skip_tuning_lab/comfy_host.py declare_torchvision_ops says why). The
module is loaded by path so that the repository itself stays off the host's sys.path.
"""
import importlib.util
from pathlib import Path

import torch

torch.set_num_threads(1)
_spec = importlib.util.spec_from_file_location(
    "skip_tuning_tests_comfy_host", Path(__file__).resolve().parents[2] / "skip_tuning_lab" / "comfy_host.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
_module.declare_torchvision_ops()
