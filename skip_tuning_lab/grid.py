"""A labelled image grid: one row of samples per setting."""
from PIL import Image, ImageDraw

import numpy as np


def labelled_grid(rows, scale: int = 4, label_width: int = 170) -> Image.Image:
    """rows: [(label, [H x W x 3 uint8 arrays])]; each sample is enlarged `scale` times (nearest)."""
    height, width = rows[0][1][0].shape[:2]
    columns = max(len(images) for _, images in rows)
    cell_w, cell_h = width * scale + 2, height * scale + 2
    grid = Image.new("RGB", (label_width + columns * cell_w, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(rows):
        draw.text((6, r * cell_h + cell_h // 2 - 6), label, fill="black")
        for c, array in enumerate(images):
            tile = Image.fromarray(np.asarray(array, dtype=np.uint8)).resize((width * scale, height * scale),
                                                                            Image.NEAREST)
            grid.paste(tile, (label_width + c * cell_w + 1, r * cell_h + 1))
    return grid
