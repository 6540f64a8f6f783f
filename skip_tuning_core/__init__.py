"""Skip Tuning (Ma et al., ICML 2024): scale U-Net skip connections. No host import (ComfyUI, WebUI, diffusers)."""
from .patcher import is_tuned, output_block_count, skip_tuned, unsupported_message
from .schedule import (
    DEFAULT_RHO_BOTTOM,
    DEFAULT_RHO_TOP,
    RHO_MAX,
    RHO_MIN,
    SkipPlan,
    SkipRange,
    SkipTuningError,
    check_percent,
    check_rho,
    make_ranges,
    parse_numbers,
    parse_ranges,
    parse_rho_list,
    rho_per_block,
)
from .texts import BLOCK_COUNT, CONTROLNET_NOTE, DESCRIPTION, HELP, SAMPLER_NOTE

__all__ = [
    "BLOCK_COUNT", "CONTROLNET_NOTE", "DEFAULT_RHO_BOTTOM", "DEFAULT_RHO_TOP", "DESCRIPTION", "HELP", "RHO_MAX", "RHO_MIN", "SAMPLER_NOTE", "SkipPlan", "SkipRange",
    "SkipTuningError", "check_percent", "check_rho", "is_tuned", "make_ranges", "output_block_count", "parse_numbers",
    "parse_ranges", "parse_rho_list", "rho_per_block", "skip_tuned", "unsupported_message",
]
