"""Draw Skip Tuning settings: rho per output block, and where in the denoising run they apply."""
from PIL import Image, ImageDraw

from .schedule import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, RHO_MAX, make_ranges

WIDTH, HEIGHT = 640, 300
MARGIN = 40
TUNED = (70, 110, 200)


def rho_colour(rho: float):
    return TUNED if rho < 1 else (200, 110, 70) if rho > 1 else (150, 150, 150)


def draw_bars(draw, box, rhos, rho_max: float, font=None, numbers: bool = True):
    """A bar per output block inside box (left, top, right, bottom), deepest on the left, and a line at rho = 1;
    `numbers` writes each rho above its bar and the block index below it."""
    left, top, right, bottom = box
    scale = (bottom - top) / rho_max
    slot = (right - left) / len(rhos)
    number_height = draw.textbbox((0, 0), "0.80", font=font)[3]
    for j, rho in enumerate(rhos):
        x0 = left + j * slot + slot * 0.15
        draw.rectangle([x0, bottom - rho * scale, x0 + slot * 0.7, bottom], fill=rho_colour(rho))
        if numbers:
            draw.text((x0, bottom + 4), str(j), fill="black", font=font)
            draw.text((x0, bottom - rho * scale - number_height - 1), f"{rho:.2f}", fill="black", font=font)
    draw.line([left, bottom - scale, right, bottom - scale], fill="black", width=1)


def draw_run(draw, box, skip_range=None):
    """The denoising run as a strip (noise on the left), filled where `skip_range` applies."""
    left, top, right, bottom = box
    draw.rectangle(box, outline="black")
    if skip_range is not None:
        span = right - left
        draw.rectangle([left + skip_range.start_percent * span, top, left + skip_range.end_percent * span, bottom],
                       fill=TUNED)


def draw_settings(num_blocks: int, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0, end_percent=1.0,
                  block_rhos: str = "") -> Image.Image:
    """A bar per output block (deepest on the left, a line at rho = 1) above a bar of the run (noise -> image)."""
    (skip_range,) = make_ranges(num_blocks, rho_top, rho_bottom, start_percent, end_percent, block_rhos)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    # At least 2 on the axis, so the tab's picture keeps its scale while rho moves below 1.8.
    rho_max = max(2.0, min(RHO_MAX, max(skip_range.rhos) * 1.1))
    draw_bars(draw, (MARGIN, 30, WIDTH - MARGIN, 200), skip_range.rhos, rho_max)
    draw.text((MARGIN, 8), "rho per output block (0 = deepest); line = 1.0", fill="black")
    run_top, run_bottom = 250, 270
    draw_run(draw, (MARGIN, run_top, WIDTH - MARGIN, run_bottom), skip_range)
    draw.text((MARGIN, run_bottom + 4), "noise", fill="black")
    draw.text((WIDTH - MARGIN - 30, run_bottom + 4), "image", fill="black")
    draw.text((MARGIN, run_top - 14), f"applies from {start_percent:.0%} to {end_percent:.0%} of the run",
              fill="black")
    return image


def draw_columns(num_blocks: int, columns, font=None, width: int = 480, bar_height: int = 120) -> Image.Image:
    """Settings side by side on one rho scale, as an A/B or a sweep compares them: per column its title, a bar per
    output block (deepest on the left, a line at rho = 1) and a strip of the run (noise on the left) filled where
    it applies. columns: [(title, SkipRange, or None for a model without Skip Tuning)]. Tight: no blank border."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_height = max(probe.textbbox((0, 0), title, font=font)[3] for title, _ in columns) + 6
    number_height = probe.textbbox((0, 0), "0.80", font=font)[3] + 4
    gap = 16
    column_width = (width - gap * (len(columns) - 1)) // len(columns)
    rhos = [skip_range.rhos if skip_range else (1.0,) * num_blocks for _, skip_range in columns]
    rho_max = min(RHO_MAX, max(max(r) for r in rhos) * 1.15)
    # Numbers only where every one fits beside its neighbours.
    numbers = column_width / num_blocks >= probe.textlength("0.80", font=font) * 1.15
    bars_top = title_height + (number_height if numbers else 2)
    bars_bottom = bars_top + bar_height
    run_top = bars_bottom + (number_height if numbers else 0) + 6
    image = Image.new("RGB", (len(columns) * (column_width + gap) - gap, run_top + 12), "white")
    draw = ImageDraw.Draw(image)
    for c, ((title, skip_range), column_rhos) in enumerate(zip(columns, rhos)):
        left = c * (column_width + gap)
        draw.text((left, 0), title, fill="black", font=font)
        draw_bars(draw, (left, bars_top, left + column_width - 1, bars_bottom), column_rhos, rho_max, font, numbers)
        draw_run(draw, (left, run_top, left + column_width - 1, run_top + 11), skip_range)
    return image
