"""Labelled image grids, and the title and caption that say what a figure shows."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

TITLE_SIZE, TEXT_SIZE = 17, 13
MARGIN = 10


def font(size: int = TEXT_SIZE):
    return ImageFont.load_default(size)


def labelled_grid(rows, scale: int = 4, label_width: int = 170, label_font=None) -> Image.Image:
    """rows: [(label, [H x W x 3 uint8 arrays])]; each sample is enlarged `scale` times (nearest). A label may
    have several lines; it is centred on its row."""
    height, width = rows[0][1][0].shape[:2]
    columns = max(len(images) for _, images in rows)
    cell_w, cell_h = width * scale + 2, height * scale + 2
    grid = Image.new("RGB", (label_width + columns * cell_w, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(rows):
        _, top, _, bottom = draw.multiline_textbbox((0, 0), label, font=label_font)
        draw.multiline_text((6, r * cell_h + (cell_h - top - bottom) // 2), label, fill="black", font=label_font)
        for c, array in enumerate(images):
            tile = Image.fromarray(np.asarray(array, dtype=np.uint8)).resize((width * scale, height * scale),
                                                                            Image.NEAREST)
            grid.paste(tile, (label_width + c * cell_w + 1, r * cell_h + 1))
    return grid


def wrap(text: str, text_font, width: float) -> list:
    """`text` broken into lines no wider than `width` pixels (at spaces)."""
    lines = []
    for word in text.split():
        if lines and text_font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def captioned(figure: Image.Image, title: str, caption=(), min_width: int = 440) -> Image.Image:
    """`figure` under its title and above its caption paragraphs, both wrapped to the figure's width, with a
    narrow white margin all round and nothing else: the picture ends where its content does."""
    width = max(figure.width, min_width)
    title_font, text_font = font(TITLE_SIZE), font(TEXT_SIZE)
    title_lines = wrap(title, title_font, width)
    caption_lines = [line for paragraph in caption for line in wrap(paragraph, text_font, width)]
    title_step, text_step = TITLE_SIZE + 5, TEXT_SIZE + 4
    figure_top = MARGIN + len(title_lines) * title_step + 4
    caption_top = figure_top + figure.height + 6
    canvas = Image.new("RGB", (width + 2 * MARGIN, caption_top + len(caption_lines) * text_step + MARGIN - 4),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(title_lines):
        draw.text((MARGIN, MARGIN + i * title_step), line, fill="black", font=title_font)
    canvas.paste(figure, (MARGIN + (width - figure.width) // 2, figure_top))
    for i, line in enumerate(caption_lines):
        draw.text((MARGIN, caption_top + i * text_step), line, fill=(60, 60, 60), font=text_font)
    return canvas
