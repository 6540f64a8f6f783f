"""The quality benchmark: how Skip Tuning changes the digits model's samples, per sampler and step count.

Every cell samples the same noise (one seed per repeat) through the real ComfyUI sampling loop
(`comfy.sample.sample`) with this pack's Skip Tuning node, and scores the digits against held-out ones:
Fréchet distance of classifier features (lower is better) and mean classifier confidence.

    .venv/bin/python -m skip_tuning_lab.quality_sweep                   # the full sweep (lab_output/quality/)
    .venv/bin/python -m skip_tuning_lab.quality_sweep --update-readme   # and regenerate README + presets
    .venv/bin/python -m skip_tuning_lab.quality_sweep --quick           # one small cell
"""
import argparse
import itertools
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .comfy_host import boot_comfy, load_pack
from .digits import HELD_OUT
from .readme import replace_section

REPO = Path(__file__).resolve().parents[1]
RHOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6)
SAMPLERS = ("euler", "heun", "dpmpp_2m", "uni_pc", "ddim", "euler_ancestral")
STEPS = (4, 6, 10, 20)
MIDDLE_RANGE = (0.3, 0.7)
FULL_SAMPLES = 1000  # per cell, over all seeds


class Sweep:
    """Samples digits with the shipped model through ComfyUI, patched by the Skip Tuning node."""

    def __init__(self, model_name="digits16.safetensors"):
        import comfy.sample

        from .quality import DigitsQuality

        self.sample_fn = comfy.sample.sample
        self.pack = load_pack()
        lab = self.pack.nodes.lab
        self.model, _ = lab.load_digits_model(model_name)
        (self.any_digit,) = lab.digit_conditioning("any")
        self.quality = DigitsQuality()

    def patched(self, rho_bottom, start=0.0, end=1.0):
        return self.pack.nodes.skip_tuning.SkipTuning().apply(self.model, 1.0, rho_bottom, start, end)[0]

    @torch.inference_mode()
    def samples(self, model, sampler, steps, seed, count):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(count, 3, 16, 16, generator=generator)
        latent = torch.zeros(count, 3, 16, 16)
        return self.sample_fn(model, noise, steps, 1.0, sampler, "normal", self.any_digit, self.any_digit, latent,
                              seed=seed, disable_pbar=True).clamp(-1, 1)

    def score(self, model, sampler, steps, seed, count):
        return self.quality.score(self.samples(model, sampler, steps, seed, count))


def mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_sweep(sweep, rhos, samplers, steps_list, seeds, count):
    """{(sampler, steps, rho): {"fd": [per seed], "confidence": [per seed]}}."""
    cells = list(itertools.product(samplers, steps_list, seeds))
    models = {rho: sweep.patched(rho) for rho in rhos}
    results = {}
    for sampler, steps, seed in tqdm(cells, desc="quality sweep", unit="cell"):
        for rho in rhos:
            scores = sweep.score(models[rho], sampler, steps, seed, count)
            entry = results.setdefault((sampler, steps, rho), {"fd": [], "confidence": []})
            entry["fd"].append(scores["fd"])
            entry["confidence"].append(scores["confidence"])
    return results


def best_rhos(results, rhos, samplers, steps_list):
    """Per sampler and step count: the rho with the lowest mean distance, its gain over rho 1, and
    whether that gain is larger than the spread (sd over seeds, so at least two) of the rho = 1 distance."""
    rows = []
    for sampler, steps in itertools.product(samplers, steps_list):
        base = results[(sampler, steps, 1.0)]["fd"]
        best = min(rhos, key=lambda r: statistics.mean(results[(sampler, steps, r)]["fd"]))
        gains = [b - x for b, x in zip(base, results[(sampler, steps, best)]["fd"])]
        gain, gain_sd = mean_sd(gains)
        rows.append({"sampler": sampler, "steps": steps, "best_rho_bottom": best,
                     "fd_off": statistics.mean(base), "fd_best": statistics.mean(results[(sampler, steps, best)]["fd"]),
                     "gain": gain, "gain_sd": gain_sd, "spread_off": mean_sd(base)[1],
                     "exceeds_spread": best != 1.0 and len(base) > 1 and gain > mean_sd(base)[1]})
    return rows


def plot(results, rhos, samplers, steps_list, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sampler in samplers:
        figure, axis = plt.subplots(figsize=(5, 3.5))
        for steps in steps_list:
            means, sds = zip(*(mean_sd(results[(sampler, steps, r)]["fd"]) for r in rhos))
            axis.errorbar(rhos, means, yerr=sds, marker="o", capsize=3, label=f"{steps} steps")
        axis.set(xlabel="rho_bottom (rho_top = 1)", ylabel="Fréchet distance (lower is better)",
                 title=f"digits model, {sampler}")
        axis.invert_xaxis()
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / f"quality_{sampler}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


def markdown(results, best, middle, rhos, samplers, steps_list, seeds, count, minutes, parameters, floor, arguments):
    full = samplers == SAMPLERS and steps_list == STEPS and len(seeds) * count >= FULL_SAMPLES
    lines = [f"Measured by `.venv/bin/python -m skip_tuning_lab.quality_sweep {arguments}` on the digits "
             f"model shipped in `lab_models/` (16×16 pixels, {parameters / 1e6:.2f} M parameters; see its model "
             f"card): "
             f"{len(seeds)} seeds × {count} samples per cell ({len(seeds) * count} in all), CFG 1, scheduler "
             f"`normal`, rho_top = 1; Fréchet distance (FD) of classifier features to {HELD_OUT} held-out digits "
             f"(lower is better; each seed's {count} samples scored on their own) and classifier confidence, mean ± "
             f"sd over seeds. For scale, {count} real training digits score FD {floor[0]:.2f} ± {floor[1]:.2f}. "
             f"The run took {minutes:.0f} minutes. "
             f"**These are a toy model's numbers**: the paper reports its gains on large models (e.g. EDM on "
             f"ImageNet 64: FID 1.75 at 19 NFE with Skip-Tuning); measure your own sampler with the sweep node."
             + ("" if full else " **A partial sweep** (fewer samplers, step counts or samples than the full one)."),
             "", "Best rho_bottom per sampler and step count (\"beats spread\": the mean gain over rho = 1 is "
             "larger than the seed-to-seed sd of the rho = 1 distance):", "",
             "| sampler | steps | FD, off | best rho_bottom | FD, best | gain (mean ± sd over seeds) | beats spread |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in best:
        lines.append(f"| {row['sampler']} | {row['steps']} | {row['fd_off']:.2f} | {row['best_rho_bottom']:g} | "
                     f"{row['fd_best']:.2f} | {row['gain']:+.2f} ± {row['gain_sd']:.2f} | "
                     f"{'yes' if row['exceeds_spread'] else 'no'} |")
    if middle:
        lines += ["", f"Scaling limited to the middle of the run (start {MIDDLE_RANGE[0]}, end {MIDDLE_RANGE[1]}), "
                  f"{middle['sampler']}, {middle['steps']} steps, rho_bottom {middle['rho']:g}: FD "
                  f"{middle['off'][0]:.2f} ± {middle['off'][1]:.2f} off, {middle['full'][0]:.2f} ± "
                  f"{middle['full'][1]:.2f} over the whole run, {middle['middle'][0]:.2f} ± {middle['middle'][1]:.2f} "
                  f"in the middle range only."]
    lines += ["", "The full table: Fréchet distance / confidence, mean ± sd over seeds.", ""]
    for sampler in samplers:
        lines += [f"**{sampler}**", "", "| steps | " + " | ".join(f"rho_bottom {r:g}" for r in rhos) + " |",
                  "| --- |" + " --- |" * len(rhos)]
        for steps in steps_list:
            cells = []
            for r in rhos:
                fd, fd_sd = mean_sd(results[(sampler, steps, r)]["fd"])
                conf, conf_sd = mean_sd(results[(sampler, steps, r)]["confidence"])
                cells.append(f"{fd:.2f} ± {fd_sd:.2f} / {conf:.3f} ± {conf_sd:.3f}")
            lines.append(f"| {steps} | " + " | ".join(cells) + " |")
        lines += ["", f"![{sampler}](docs/quality_{sampler}.png)", ""]
    return "\n".join(lines)


def presets(best, seeds, count):
    """Presets only where the measured gain beats the seed spread."""
    return [{"name": f"{row['sampler']}, {row['steps']} steps", "rho_top": 1.0, "rho_bottom": row["best_rho_bottom"],
             "measured": f"digits model: FD {row['fd_off']:.2f} off -> {row['fd_best']:.2f} "
                         f"({len(seeds)} seeds x {count} samples, skip_tuning_lab/quality_sweep.py)"}
            for row in best if row["exceeds_spread"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small cell (euler, 4 steps, rho 1 and 0.8)")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=334, help="samples per seed and cell")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "lab_output" / "quality")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    if args.quick and args.update_readme:
        parser.error("--quick checks the pipeline on one small cell; its figures never go into README")
    torch.set_num_threads(args.threads)
    boot_comfy()
    started = time.monotonic()
    if args.quick:
        rhos, samplers, steps_list, seeds, count = (1.0, 0.8), ("euler",), (4,), (0,), 64
    else:
        rhos, samplers, steps_list, seeds, count = (RHOS, tuple(args.samplers), tuple(args.steps),
                                                    tuple(range(args.seeds)), args.samples)
    args.out.mkdir(parents=True, exist_ok=True)
    sweep = Sweep()
    results = run_sweep(sweep, rhos, samplers, steps_list, seeds, count)
    best = best_rhos(results, rhos, samplers, steps_list)
    middle = None
    if not args.quick:
        sampler, steps, rho = "euler", 10, 0.8
        scores = {name: [sweep.score(model, sampler, steps, seed, count)["fd"] for seed in seeds]
                  for name, model in (("off", sweep.model), ("full", sweep.patched(rho)),
                                      ("middle", sweep.patched(rho, *MIDDLE_RANGE)))}
        middle = {"sampler": sampler, "steps": steps, "rho": rho, **{k: mean_sd(v) for k, v in scores.items()}}
    minutes = (time.monotonic() - started) / 60
    parameters = sum(p.numel() for p in sweep.model.model.diffusion_model.parameters())
    floor = mean_sd([sweep.quality.real_digits(count, seed)["fd"] for seed in seeds])
    plots = plot(results, rhos, samplers, steps_list, args.out)
    report = {"cells": [{"sampler": s, "steps": n, "rho_bottom": r, **v} for (s, n, r), v in results.items()],
              "best": best, "middle_range": middle, "seeds": list(seeds), "samples_per_seed": count,
              "minutes": minutes, "real_digits_fd": floor}
    (args.out / "quality.json").write_text(json.dumps(report, indent=1))
    text = markdown(results, best, middle, rhos, samplers, steps_list, seeds, count, minutes, parameters, floor,
                    shlex.join(sys.argv[1:]))
    (args.out / "quality.md").write_text(text)
    print(text)
    if args.update_readme:
        docs = REPO / "docs"
        docs.mkdir(exist_ok=True)
        for path in plots:
            (docs / path.name).write_bytes(path.read_bytes())
        replace_section(REPO / "README.md", "quality", text)
        (REPO / "sd_webui_ext" / "presets.json").write_text(json.dumps(presets(best, seeds, count), indent=1) + "\n")


if __name__ == "__main__":
    main()
