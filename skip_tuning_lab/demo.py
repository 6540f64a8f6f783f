"""The demo: the real ComfyUI server, the digits model shipped with this pack, Skip Tuning off / on / swept.

Queues the shipped lab workflows (example_workflows/lab_digits_sweep.json and lab_digits_ab.json) through
ComfyUI's HTTP API on 127.0.0.1, saves the images and one grid that says what it shows, and prints each
setting's quality (Fréchet distance to held-out digits, lower is better; classifier confidence).

    bash tools/demo.sh            # sets up .venv first
    bash tools/demo.sh --serve    # then keeps the server running: open the printed address in a browser

Ctrl-C or SIGTERM stops the demo and the server it started.
"""
import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from skip_tuning_core import parse_numbers

from .comfy_server import ComfyServer, interrupt_on_sigterm, ui_to_api
from .grid import captioned, font, labelled_grid
from .quality import DigitsQuality

REPO = Path(__file__).resolve().parents[1]
# The sweep first: its values, in its order, are the grid's rows; the A/B's outputs join the rows they equal.
WORKFLOWS = ("lab_digits_sweep", "lab_digits_ab")
SHOWN = 12


def load_workflow(name: str) -> dict:
    return json.loads((REPO / "example_workflows" / f"{name}.json").read_text())


def api_prompt(workflow: dict, object_info: dict, batch: int | None = None) -> dict:
    """The workflow as POST /prompt takes it; `batch` replaces its latent batch size."""
    prompt = ui_to_api(workflow, object_info)
    for node in prompt.values():
        if node["class_type"] == "EmptyChromaRadianceLatentImage" and batch:
            node["inputs"]["batch_size"] = batch
    return prompt


def label(prefix: str) -> str:
    """A saved file's prefix as a row label: 'digits_skip_tuning_off' -> 'off', 'rho_bottom_0.9' ->
    'rho_bottom 0.9'."""
    return re.sub(r"_([\d.]+)$", r" \1", prefix.removeprefix("digits_skip_tuning_"))


def queue_workflow(server, prompt: dict) -> dict:
    """Run a prompt; returns {row label: [images]} in the order the workflow saves them."""
    images = {}
    for path in server.output_files(server.run_prompt(prompt)):
        images.setdefault(label(re.sub(r"_\d+_\.png$", "", path.name)), []).append(
            np.asarray(Image.open(path).convert("RGB")))
    return images


def sampling(prompt: dict) -> str:
    """The KSampler settings, which every KSampler of a shipped workflow shares: sampler, steps, CFG, seed."""
    (settings,) = {(n["inputs"]["sampler_name"], n["inputs"]["scheduler"], n["inputs"]["steps"], n["inputs"]["cfg"],
                    n["inputs"]["seed"]) for n in prompt.values() if n["class_type"] == "KSampler"}
    sampler, scheduler, steps, cfg, seed = settings
    return f"{sampler}, {steps} steps, scheduler {scheduler}, CFG {cfg:g}, seed {seed}"


def skip_tuning(prompt: dict) -> str:
    """The Skip Tuning settings of the prompt's Skip Tuning and Skip Tuning Sweep nodes, in words."""
    texts = []
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "SkipTuningSweep":
            other = "rho_top" if inputs["sweep"] == "rho_bottom" else "rho_bottom"
            values = ", ".join(f"{value:g}" for value in parse_numbers(inputs["values"], "values"))
            text = f"{inputs['sweep']} {values} with {other} {inputs[other]:g}"
        elif node["class_type"] == "SkipTuning":
            text = f"rho_top {inputs['rho_top']:g}, rho_bottom {inputs['rho_bottom']:g}"
        else:
            continue
        start, end = inputs["start_percent"], inputs["end_percent"]
        run = "over the whole run" if (start, end) == (0, 1) else f"from {start:.0%} to {end:.0%} of the run"
        texts.append(f"{text} {run}")
    return "; ".join(texts)


def merge_identical(outputs: dict) -> list:
    """[(labels, images)]: one row per distinct set of images, its labels those of every output that made it."""
    rows = []
    for name, images in outputs.items():
        same = [row for row in rows if np.array_equal(row[1], images)]
        if same:
            same[0][0].append(name)
        else:
            rows.append(([name], images))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500, help="digits per setting (the quality needs hundreds)")
    parser.add_argument("--out", type=Path, default=REPO / "lab_output" / "demo")
    parser.add_argument("--serve", action="store_true", help="keep the server running afterwards")
    parser.add_argument("--port", type=int, default=8188)
    args = parser.parse_args()
    torch.set_num_threads(1)
    interrupt_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = ComfyServer(args.out / "comfyui", port=args.port)
    try:
        server.start()
        print(f"ComfyUI is running at {server.url} (pid {server.process.pid}, log: {server.log_path})", flush=True)
        object_info = server.get("/object_info")
        outputs, prompts = {}, {}
        for name in WORKFLOWS:
            print(f"queueing example_workflows/{name}.json with {args.batch} digits per setting ...", flush=True)
            prompts[name] = api_prompt(load_workflow(name), object_info, args.batch)
            outputs.update(queue_workflow(server, prompts[name]))
        quality = DigitsQuality()
        rows, report = [], {}
        print(f"\n{'setting':<22} {'Fréchet distance':>17} {'confidence':>11}")
        for names, images in merge_identical(outputs):
            pixels = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
            scores = quality.score(pixels)
            name = " = ".join(names)
            report[name] = scores
            rows.append((f"{name}\nFD {scores['fd']:.2f}", images[:SHOWN]))
            print(f"{name:<22} {scores['fd']:>17.2f} {scores['confidence']:>11.3f}")
        title = f"Skip Tuning on the digits model: {skip_tuning(prompts['lab_digits_sweep'])}"
        merged = [name for name in report if " = " in name]
        caption = [f"{sampling(prompts['lab_digits_sweep'])}: the same noise in every row. "
                   + (f"{', '.join(merged)}: the A/B workflow's images equal the sweep's, pixel for pixel."
                      if merged else "The A/B workflow's images equal none of the sweep's."),
                   (f"FD: Frechet distance of the classifier features of all {args.batch} digits of a row to "
                    f"{len(quality.reference)} held-out digits, lower is better. One seed: it shows the pipeline "
                    "works, not that a setting is better (README, 'Measured on the digits model').")]
        grid = captioned(labelled_grid(rows, label_width=150, label_font=font()), title, caption)
        text = PngImagePlugin.PngInfo()
        text.add_text("Title", title)
        text.add_text("Description", "\n".join(caption + [row_label for row_label, _ in rows]))
        grid_path = args.out / "demo_grid.png"
        grid.save(grid_path, pnginfo=text)
        (args.out / "demo_quality.json").write_text(json.dumps(report, indent=1))
        print(f"\n{caption[0]}\nimages in {server.base_dir / 'output'}")
        print("one seed only: these figures show the pipeline works, not that a setting is better; the "
              "confirmed table (other seeds, paired test) is README's 'Measured on the digits model'")
        print(f"grid: {grid_path} ({time.monotonic() - started:.0f} s)", flush=True)
        if args.serve:
            print(f"\nserving at {server.url}: load example_workflows/lab_digits_ab.json; Ctrl-C stops it",
                  flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping the ComfyUI server", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
