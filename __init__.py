"""Skip Tuning for ComfyUI: the node pack's entry point (the WebUI extension lives in scripts/)."""
from .nodes import EXPORTS

globals().update(EXPORTS)
WEB_DIRECTORY = "./web"
__all__ = [*EXPORTS, "WEB_DIRECTORY"]
