"""Draw Skip Tuning settings: rho per output block, and where in the denoising run they apply."""
from PIL import Image, ImageDraw

from .schedule import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, RHO_MAX, make_ranges

WIDTH, HEIGHT = 640, 300
MARGIN = 40


def draw_settings(num_blocks: int, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0, end_percent=1.0,
                  block_rhos: str = "") -> Image.Image:
    """A bar per output block (deepest on the left, a line at rho = 1) above a bar of the run (noise -> image)."""
    (skip_range,) = make_ranges(num_blocks, rho_top, rho_bottom, start_percent, end_percent, block_rhos)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    top, bottom = 30, 200
    scale = (bottom - top) / max(2.0, min(RHO_MAX, max(skip_range.rhos) * 1.1))
    slot = (WIDTH - 2 * MARGIN) / num_blocks
    for j, rho in enumerate(skip_range.rhos):
        x0 = MARGIN + j * slot + slot * 0.15
        colour = (70, 110, 200) if rho < 1 else (200, 110, 70) if rho > 1 else (150, 150, 150)
        draw.rectangle([x0, bottom - rho * scale, x0 + slot * 0.7, bottom], fill=colour)
        draw.text((x0, bottom + 4), str(j), fill="black")
        draw.text((x0, bottom - rho * scale - 12), f"{rho:.2f}", fill="black")
    draw.line([MARGIN, bottom - scale, WIDTH - MARGIN, bottom - scale], fill="black", width=1)
    draw.text((MARGIN, 8), "rho per output block (0 = deepest); line = 1.0", fill="black")
    run_top, run_bottom = 250, 270
    draw.rectangle([MARGIN, run_top, WIDTH - MARGIN, run_bottom], outline="black")
    span = WIDTH - 2 * MARGIN
    draw.rectangle([MARGIN + start_percent * span, run_top, MARGIN + end_percent * span, run_bottom],
                   fill=(70, 110, 200))
    draw.text((MARGIN, run_bottom + 4), "noise", fill="black")
    draw.text((WIDTH - MARGIN - 30, run_bottom + 4), "image", fill="black")
    draw.text((MARGIN, run_top - 14), f"applies from {start_percent:.0%} to {end_percent:.0%} of the run",
              fill="black")
    return image
