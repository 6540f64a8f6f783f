"""Test-only ComfyUI nodes that stand in for the checkpoint loader and the text encoder (no SD weights here)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_models import conditioning, tiny_model, tiny_vae  # noqa: E402


class SkipTuningTestCheckpoint:
    """Replaces CheckpointLoaderSimple: a tiny SD1- or SDXL-like MODEL and a small real VAE (TAESD)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (["sd1", "sdxl"],)}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, kind):
        return tiny_model(kind), None, tiny_vae()


class SkipTuningTestTextEncode:
    """Replaces CLIPTextEncode: seeded random CONDITIONING of the tiny models' width, varying with the text."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}), "kind": (["sd1", "sdxl"],)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    def encode(self, text, kind):
        return (conditioning(kind, sum(text.encode()) % 10000),)


NODE_CLASS_MAPPINGS = {"SkipTuningTestCheckpoint": SkipTuningTestCheckpoint,
                       "SkipTuningTestTextEncode": SkipTuningTestTextEncode}
