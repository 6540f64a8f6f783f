"""Skip Tuning (Ma et al., ICML 2024): scale U-Net skip connections, without any host import."""
from .patch import make_output_block_patch
from .schedule import (
    RHO_MAX,
    RHO_MIN,
    SigmaGate,
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
    "RHO_MAX", "RHO_MIN", "SigmaGate", "SkipPlan", "SkipRange", "SkipTuningError", "check_percent",
    "check_rho", "make_output_block_patch", "make_ranges", "parse_numbers", "parse_ranges", "parse_rho_list", "rho_per_block",
]
