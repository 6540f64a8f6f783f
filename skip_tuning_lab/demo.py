"""The demo: the real ComfyUI server, the digits model shipped with this pack, Skip Tuning off / on / swept.

Queues the shipped lab workflows (example_workflows/lab_digits_ab.json and lab_digits_sweep.json) through
ComfyUI's HTTP API on 127.0.0.1, saves the images and one labelled grid, and prints each setting's quality
(Fréchet distance to held-out digits, lower is better; classifier confidence).

    bash tools/demo.sh            # sets up .venv first
    bash tools/demo.sh --serve    # then keeps the server running: open the printed address in a browser
"""
import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .comfy_server import ComfyServer, ui_to_api
from .grid import labelled_grid
from .quality import DigitsQuality

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = ("lab_digits_ab", "lab_digits_sweep")
SHOWN = 12


def queue_workflow(server, name, object_info, batch):
    """Run a shipped workflow with its latent batch set to `batch`; returns {filename prefix: [images]}."""
    workflow = json.loads((REPO / "example_workflows" / f"{name}.json").read_text())
    prompt = ui_to_api(workflow, object_info)
    for node in prompt.values():
        if node["class_type"] == "EmptyChromaRadianceLatentImage":
            node["inputs"]["batch_size"] = batch
    images = defaultdict(list)
    for path in sorted(server.output_files(server.run_prompt(prompt)), key=lambda p: p.name):
        images[re.sub(r"_\d+_\.png$", "", path.name)].append(np.asarray(Image.open(path).convert("RGB")))
    return images


def label(prefix: str) -> str:
    return {"digits_skip_tuning_off": "off", "digits_skip_tuning_on": "on (rho_bottom 0.8)"}.get(
        prefix, prefix.replace("rho_bottom_", "rho_bottom "))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500, help="digits per setting (the quality needs hundreds)")
    parser.add_argument("--out", type=Path, default=REPO / "lab_output" / "demo")
    parser.add_argument("--serve", action="store_true", help="keep the server running afterwards")
    parser.add_argument("--port", type=int, default=8188)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = ComfyServer(args.out / "comfyui", port=args.port).start()
    try:
        print(f"ComfyUI is running at {server.url} (log: {server.log_path})", flush=True)
        object_info = server.get("/object_info")
        results = {}
        for name in WORKFLOWS:
            print(f"queueing example_workflows/{name}.json with {args.batch} digits per setting ...", flush=True)
            results.update(queue_workflow(server, name, object_info, args.batch))
        quality = DigitsQuality()
        rows, report = [], {}
        print(f"\n{'setting':<22} {'Fréchet distance':>17} {'confidence':>11}")
        for prefix, images in results.items():
            pixels = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
            scores = quality.score(pixels)
            report[label(prefix)] = scores
            rows.append((label(prefix), images[:SHOWN]))
            print(f"{label(prefix):<22} {scores['fd']:>17.2f} {scores['confidence']:>11.3f}")
        grid_path = args.out / "demo_grid.png"
        labelled_grid(rows).save(grid_path)
        (args.out / "demo_quality.json").write_text(json.dumps(report, indent=1))
        print(f"\nsame seed in every row; 6 Euler steps; images in {server.base_dir / 'output'}")
        print("one seed only: these figures show the pipeline works, not that a setting is better; the "
              "confirmed table (other seeds, paired test) is README's 'Measured on the digits model'")
        print(f"grid: {grid_path}\n(the 'rho_bottom 1' row and 'off' are the same run of the model; "
              f"{time.monotonic() - started:.0f} s)")
        if args.serve:
            print(f"\nserving at {server.url}: load example_workflows/lab_digits_ab.json; Ctrl-C stops it")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
