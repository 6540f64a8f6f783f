"""Skip Tuning (Ma et al., ICML 2024): scale U-Net skip connections. No host import (ComfyUI, WebUI, diffusers)."""
from .patcher import is_tuned, output_block_count, skip_tuned, unsupported_message
from .schedule import (
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

__all__ = [
    "RHO_MAX", "RHO_MIN", "SkipPlan", "SkipRange", "SkipTuningError", "check_percent", "check_rho", "is_tuned",
    "make_ranges", "output_block_count", "parse_numbers", "parse_ranges", "parse_rho_list", "rho_per_block",
    "skip_tuned", "unsupported_message",
]
