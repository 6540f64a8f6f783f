"""Skip Tuning for the AUTOMATIC1111 / Forge WebUI. `attach` works on any ldm/sgm U-Net without the WebUI."""
from .unet_hooks import SkipHandle, attach

__all__ = ["SkipHandle", "attach"]
