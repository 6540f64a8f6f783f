"""The template cards: one `example_workflows/<name>.jpg` per example workflow, which ComfyUI's templates
browser shows beside it. Each card is titled with the first sentence of the workflow's note and names the
sampler, steps and seed of its KSampler.

The lab workflows' cards are their real output: each run on the real ComfyUI server with the digits model, a
row per saved setting. The SD1.5 / SDXL workflows need weights this repository does not have, so their cards
show no image, only the Skip Tuning settings of the model each KSampler samples, side by side: one column for
txt2img, two for the A/B (without and with), one per value for the sweep.

    .venv/bin/python -m skip_tuning_lab.thumbnails
"""
import argparse
import re
from pathlib import Path

from skip_tuning_core import make_ranges, parse_numbers
from skip_tuning_core.picture import draw_columns

from .comfy_server import ComfyServer, interrupt_on_sigterm
from .demo import api_prompt, load_workflow, queue_workflow, sampling, skip_tuning
from .grid import captioned, font, labelled_grid

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "example_workflows"
SAMPLES = 6
WIDTH = 500
# Output blocks of the checkpoints the SD workflows load (skip_tuning_core.texts.BLOCK_COUNT).
OUTPUT_BLOCKS = {"v1-5-pruned-emaonly.safetensors": 12, "sd_xl_base_1.0.safetensors": 9}


def note(workflow: dict) -> str:
    """The first sentence of the workflow's note: what it does, in its own words."""
    (text,) = [node["widgets_values"][0] for node in workflow["nodes"] if node["type"] == "Note"]
    return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]


def columns(prompt: dict, num_blocks: int) -> list:
    """For each KSampler, in node order, the settings of the model it samples: [(title, SkipRange or None)]."""
    result = []
    for node in prompt.values():
        if node["class_type"] != "KSampler":
            continue
        source = prompt[node["inputs"]["model"][0]]
        inputs = source["inputs"]
        if source["class_type"] not in ("SkipTuning", "SkipTuningSweep"):
            result.append(("without Skip Tuning", None))
            continue
        sweep = inputs.get("sweep", "rho_bottom")
        for value in parse_numbers(inputs["values"], "values") if "values" in inputs else [inputs[sweep]]:
            ramp = {"rho_top": inputs["rho_top"], "rho_bottom": inputs["rho_bottom"], sweep: value}
            (skip_range,) = make_ranges(num_blocks, **ramp, start_percent=inputs["start_percent"],
                                        end_percent=inputs["end_percent"])
            result.append((f"{sweep} {value:g}", skip_range))
    return result


def settings_card(workflow: dict, prompt: dict):
    """The card of an SD workflow: the settings each KSampler's model is sampled with, and what it renders."""
    nodes = {node["class_type"]: node["inputs"] for node in prompt.values()}
    checkpoint = nodes["CheckpointLoaderSimple"]["ckpt_name"]
    ksampler = nodes["KSampler"]
    positive = prompt[ksampler["positive"][0]]["inputs"]["text"]
    latent = nodes["EmptyLatentImage"]
    figure = draw_columns(OUTPUT_BLOCKS[checkpoint], columns(prompt, OUTPUT_BLOCKS[checkpoint]), font(), WIDTH)
    return captioned(figure, note(workflow), [
        (f"{checkpoint}, {latent['width']}x{latent['height']}, {sampling(prompt)}; Skip Tuning "
         f"{skip_tuning(prompt)}; prompt “{positive}”."),
        ("Settings only, no image (no SD weights here): a bar per output block, its rho (deepest on the left, "
         "the line at 1), and below it where in the run (noise to image) the scaling applies.")], WIDTH)


def lab_card(workflow: dict, prompt: dict, outputs: dict):
    """The card of a lab workflow: the first digits of each setting it saves, as it saved them."""
    rows = [(name, images[:SAMPLES]) for name, images in outputs.items()]
    caption = (f"Real output of this workflow in ComfyUI, the first {SAMPLES} digits of each setting: "
               f"{sampling(prompt)}; Skip Tuning {skip_tuning(prompt)}.")
    return captioned(labelled_grid(rows, label_width=110, label_font=font()), note(workflow), [caption], WIDTH)


def main():
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    interrupt_on_sigterm()
    with ComfyServer(REPO / "lab_output" / "thumbnails") as server:
        object_info = server.get("/object_info")
        for path in sorted(WORKFLOWS.glob("*.json")):
            workflow = load_workflow(path.stem)
            if path.stem.startswith("lab_"):
                prompt = api_prompt(workflow, object_info, SAMPLES)
                image = lab_card(workflow, prompt, queue_workflow(server, prompt))
            else:
                image = settings_card(workflow, api_prompt(workflow, object_info))
            image.save(path.with_suffix(".jpg"), quality=90)
            print(path.with_suffix(".jpg"))


if __name__ == "__main__":
    main()
