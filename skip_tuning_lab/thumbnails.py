"""The template cards: one `example_workflows/<name>.jpg` per example workflow, which ComfyUI's templates
browser shows beside it.

The lab workflows' cards are their real output: each run on the real ComfyUI server with the digits model, a
row per setting. The SD1.5 / SDXL workflows need weights this repository does not have, so their cards show
no image at all, only the workflow's own Skip Tuning settings: rho per output block and the part of the run.

    .venv/bin/python -m skip_tuning_lab.thumbnails
"""
import json
from pathlib import Path

from PIL import Image, ImageDraw

from skip_tuning_core.picture import draw_settings

from .comfy_server import ComfyServer
from .demo import label, queue_workflow
from .grid import labelled_grid

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "example_workflows"
SIZE = (512, 384)  # the templates browser shows cards at 4:3
SAMPLES = 6


def card(image: Image.Image, caption: str) -> Image.Image:
    """`image` fitted into a 4:3 card with a caption line below."""
    canvas = Image.new("RGB", SIZE, "white")
    fitted = image.copy()
    fitted.thumbnail((SIZE[0] - 16, SIZE[1] - 40))
    canvas.paste(fitted, ((SIZE[0] - fitted.width) // 2, 8))
    ImageDraw.Draw(canvas).text((10, SIZE[1] - 24), caption, fill="black")
    return canvas


def settings_card(workflow: dict, name: str) -> Image.Image:
    """The workflow's Skip Tuning settings drawn, for a model whose output cannot be made here."""
    num_blocks = 9 if "sdxl" in name else 12
    for node in workflow["nodes"]:
        values = node.get("widgets_values")
        if node["type"] == "SkipTuning":
            rho_top, rho_bottom, start, end = values
            caption = f"settings only (no SD weights here): rho_top {rho_top:g}, rho_bottom {rho_bottom:g}"
            return card(draw_settings(num_blocks, rho_top, rho_bottom, start, end), caption)
        if node["type"] == "SkipTuningSweep":
            sweep, swept, rho_top, rho_bottom, start, end = values
            caption = f"settings only (no SD weights here): {sweep} swept over {swept}"
            return card(draw_settings(num_blocks, rho_top, rho_bottom, start, end), caption)
    raise ValueError(f"{name} has no Skip Tuning node")


def main():
    lab = sorted(WORKFLOWS.glob("lab_*.json"))
    with ComfyServer(REPO / "lab_output" / "thumbnails") as server:
        object_info = server.get("/object_info")
        for path in lab:
            rows = [(label(prefix), images[:SAMPLES])
                    for prefix, images in queue_workflow(server, path.stem, object_info, SAMPLES).items()]
            card(labelled_grid(rows), f"{path.stem}: real output, the same {SAMPLES} seeds in every row").save(
                path.with_suffix(".jpg"), quality=90)
            print(path.with_suffix(".jpg"))
    for path in sorted(set(WORKFLOWS.glob("*.json")) - set(lab)):
        settings_card(json.loads(path.read_text()), path.stem).save(path.with_suffix(".jpg"), quality=90)
        print(path.with_suffix(".jpg"))


if __name__ == "__main__":
    main()
