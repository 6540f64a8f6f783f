"""Skip Tuning's per-block scale factors and the parts of the denoising run they apply to.

Ma et al., "The Surprising Effectiveness of Skip-Tuning in Diffusion Sampling", ICML 2024:
the skip connection entering U-Net output block j is multiplied by

    rho_j = rho_bottom + (rho_top - rho_bottom) * j / (N - 1),    j = 0 .. N-1,

where output block 0 is the deepest (it pops the skip of the last input block) and output block
N-1 is the shallowest (the skip nearest the input). Host-free: no ComfyUI, WebUI or torch import.
"""
import math
import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

RHO_MIN = 0.0
RHO_MAX = 3.0
# The paper's rho_top and a rho_bottom inside its 0.5-0.9 range: what every host starts from.
DEFAULT_RHO_TOP = 1.0
DEFAULT_RHO_BOTTOM = 0.8
# Relative tolerance for comparing sigmas: float32 schedules and float64 percent_to_sigma
# round the same boundary differently.
SIGMA_RTOL = 1e-4

Rhos = Tuple[float, ...]


@dataclass(frozen=True)
class SkipNames:
    """How messages name a model's skips, so a count error speaks of what the user's model has."""
    model: str = "U-Net"
    skip: str = "output block"  # one scaled skip: a U-Net's output block pops one


UNET_NAMES = SkipNames()


class SkipTuningError(ValueError):
    """Bad Skip Tuning input; the message names the field and the allowed range."""


def check_rho(value, field: str) -> float:
    """A scale factor: a finite number in [RHO_MIN, RHO_MAX]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SkipTuningError(f"{field} must be a number from {RHO_MIN:g} to {RHO_MAX:g}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not RHO_MIN <= value <= RHO_MAX:
        raise SkipTuningError(f"{field} must be a finite number from {RHO_MIN:g} to {RHO_MAX:g}, got {value!r}")
    return value


def check_percent(value, field: str) -> float:
    """A point of the denoising run: 0 = pure noise, 1 = finished image."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SkipTuningError(f"{field} must be a number from 0 to 1, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise SkipTuningError(f"{field} must be a number from 0 to 1 (0 = pure noise, 1 = finished), got {value!r}")
    return value


def rho_per_block(num_blocks: int, rho_top: float, rho_bottom: float) -> list:
    """The linear ramp of the paper: output block 0 (deepest) gets rho_bottom, the last gets rho_top."""
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise SkipTuningError(f"num_blocks must be a whole number >= 1, got {num_blocks!r}")
    rho_top = check_rho(rho_top, "rho_top")
    rho_bottom = check_rho(rho_bottom, "rho_bottom")
    if num_blocks == 1:
        return [rho_bottom]
    return [rho_bottom + (rho_top - rho_bottom) * j / (num_blocks - 1) for j in range(num_blocks)]


DECIMAL_COMMA = "commas separate numbers here: write decimals with a point (0.2, not 0,2)"


def parse_numbers(text, field: str) -> list:
    """Comma- or space-separated decimal numbers, parsed strictly (never evaluated).

    A comma written as a decimal separator is refused, never read as two numbers: it shows as a word of
    two digit runs joined by a bare comma among words separated by spaces ('1,0 0,8')."""
    if not isinstance(text, str):
        raise SkipTuningError(f"{field} must be text such as '1.0, 0.9, 0.8', got {text!r}")
    words = [word.strip(",") for word in text.split()]
    if len(words) > 1 and any(re.fullmatch(r"\d+,\d+", word) for word in words):
        raise SkipTuningError(f"{field}: {text.strip()!r} reads as commas inside numbers; {DECIMAL_COMMA}")
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    if not items:
        raise SkipTuningError(f"{field} is empty: give numbers such as '1.0, 0.9, 0.8'")
    numbers = []
    for item in items:
        try:
            numbers.append(float(item))
        except ValueError:
            raise SkipTuningError(f"{field}: {item!r} is not a number") from None
    return numbers


def parse_rho_list(text, num_blocks: int, field: str = "block_rhos", names: SkipNames = UNET_NAMES) -> list:
    """A per-block list, output block 0 (deepest) first; its length must match the model."""
    rhos = [check_rho(value, f"{field}, value {j + 1} ({names.skip} {j})")
            for j, value in enumerate(parse_numbers(text, field))]
    if len(rhos) != num_blocks:
        raise SkipTuningError(
            f"{field} has {len(rhos)} values but this {names.model} has {num_blocks} {names.skip}s (counted on the "
            f"model itself); give one value per {names.skip}, deepest first"
            + (f" ({DECIMAL_COMMA})" if re.search(r"\d,\d", text) else "")
        )
    return rhos


@dataclass(frozen=True)
class SkipRange:
    """Rho values for the steps between start_percent and end_percent of the denoising run."""

    rhos: Rhos
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self):
        check_percent(self.start_percent, "start_percent")
        check_percent(self.end_percent, "end_percent")
        if self.start_percent > self.end_percent:
            raise SkipTuningError(
                f"start_percent ({self.start_percent:g}) must not be after end_percent ({self.end_percent:g})"
            )
        for j, rho in enumerate(self.rhos):
            check_rho(rho, f"rho of output block {j}")


def parse_ranges(text, num_blocks: int, default_rhos: Sequence[float], field: str = "ranges",
                 names: SkipNames = UNET_NAMES) -> list:
    """Lines of `start-end` or `start-end: rho_top, rho_bottom` or `start-end: <one rho per block>`.

    A bare range uses `default_rhos`; two numbers are (rho_top, rho_bottom) of the paper's ramp;
    one number per output block is a per-block list, deepest first. Text after `#` is a comment.
    """
    if not isinstance(text, str):
        raise SkipTuningError(f"{field} must be text, got {text!r}")
    ranges = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{field} line {number}"
        span, _, values = line.partition(":")
        if "," in span:
            raise SkipTuningError(f"{where}: {span.strip()!r} has a comma in the range; {DECIMAL_COMMA}")
        match = re.fullmatch(r"\s*([^\s-]+)\s*-\s*([^\s-]+)\s*", span)
        if match is None:
            raise SkipTuningError(f"{where}: expected 'start-end' such as '0.0-0.5', got {span.strip()!r}")
        start, end = (parse_numbers(part, where)[0] for part in match.groups())
        if not values.strip():
            rhos = list(default_rhos)
        else:
            numbers = parse_numbers(values, where)
            if len(numbers) == 2:
                hint = f" ({DECIMAL_COMMA})" if re.fullmatch(r"\s*\d+,\d+\s*", values) else ""
                try:
                    rhos = rho_per_block(num_blocks, check_rho(numbers[0], f"{where} rho_top"),
                                         check_rho(numbers[1], f"{where} rho_bottom"))
                except SkipTuningError as error:
                    raise SkipTuningError(f"{error}{hint}") from None
            else:
                rhos = parse_rho_list(values, num_blocks, where, names)
        try:
            ranges.append(SkipRange(tuple(rhos), start, end))
        except SkipTuningError as error:
            raise SkipTuningError(f"{where}: {error}") from None
    if not ranges:
        raise SkipTuningError(f"{field} is empty: give at least one line such as '0.0-1.0'")
    return ranges


@dataclass(frozen=True)
class Window:
    """One range resolved to noise levels: it applies while sigma_low <= sigma <= sigma_high."""

    sigma_high: float
    sigma_low: float
    rhos: Optional[Rhos]  # None when every rho is 1: the range claims its steps and changes nothing

    def contains(self, sigma: float) -> bool:
        """Inside the closed interval, with a relative tolerance at both ends."""
        if self.sigma_low <= sigma <= self.sigma_high:
            return True
        return math.isclose(sigma, self.sigma_low, rel_tol=SIGMA_RTOL) or math.isclose(
            sigma, self.sigma_high, rel_tol=SIGMA_RTOL
        )


class SkipPlan:
    """Which rho values apply at a given noise level; the first listed range containing it wins."""

    def __init__(self, ranges: Sequence[SkipRange], num_blocks: int, percent_to_sigma: Callable[[float], float]):
        """`percent_to_sigma` is the host's map from percent of the run to its noise level (any monotone scale)."""
        if not ranges:
            raise SkipTuningError("at least one range is needed")
        windows = []
        for skip_range in ranges:
            if len(skip_range.rhos) != num_blocks:
                raise SkipTuningError(
                    f"a range has {len(skip_range.rhos)} rho values but the U-Net has {num_blocks} output blocks"
                )
            rhos = None if all(rho == 1.0 for rho in skip_range.rhos) else tuple(skip_range.rhos)
            windows.append(Window(float(percent_to_sigma(skip_range.start_percent)),
                                  float(percent_to_sigma(skip_range.end_percent)), rhos))
        self.windows = tuple(windows)
        self.ranges = tuple(ranges)
        self.num_blocks = num_blocks
        self.is_identity = all(window.rhos is None for window in self.windows)

    def rhos_at(self, sigma: float) -> Optional[Rhos]:
        """The per-block rhos at this noise level, or None when nothing is to be scaled."""
        for window in self.windows:
            if window.contains(sigma):
                return window.rhos
        return None


def make_ranges(num_blocks: int, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0,
                end_percent=1.0, block_rhos: str = "", ranges: str = "", names: SkipNames = UNET_NAMES) -> list:
    """The ranges a node or script asks for: the ramp (or `block_rhos`) over one range, or `ranges` text."""
    if block_rhos.strip():
        default_rhos = parse_rho_list(block_rhos, num_blocks, names=names)
    else:
        default_rhos = rho_per_block(num_blocks, rho_top, rho_bottom)
    if ranges.strip():
        return parse_ranges(ranges, num_blocks, default_rhos, names=names)
    return [SkipRange(tuple(default_rhos), check_percent(start_percent, "start_percent"),
                      check_percent(end_percent, "end_percent"))]
