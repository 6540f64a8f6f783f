"""The quality benchmark: does Skip Tuning improve the digits model's samples, on seeds it was not tuned on?

Two stages, each through the real ComfyUI sampling loop (`comfy.sample.sample`) with this pack's Skip Tuning
node, every setting of a seed sampling the same noise, scored against held-out digits (Fréchet distance of
classifier features, lower is better, and classifier confidence):

1. **Selection**: every rho_bottom on the selection seeds; per sampler and step count the rho with the lowest
   mean distance is picked.
2. **Confirmation**: the pick and the node's default rho_bottom, against rho 1, on fresh seeds never used for
   selection. A setting *helps* when the paired one-sided t test of the per-seed gains gives p < ALPHA and the
   mean gain is at least MIN_EFFECT of the unpatched distance; it *hurts* under the same rule the other way.
   Only confirmed picks become presets; confirmed harms are listed as not recommended.

    .venv/bin/python -m skip_tuning_lab.quality_sweep                   # the full run (lab_output/quality/)
    .venv/bin/python -m skip_tuning_lab.quality_sweep --update-readme   # and regenerate README, presets, help
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
from scipy import stats
from tqdm import tqdm

from skip_tuning_core import DEFAULT_RHO_BOTTOM
from skip_tuning_core.presets import NOT_RECOMMENDED, PRESETS_FILE, RECOMMENDED, presets_markdown

from .comfy_host import boot_comfy, load_pack
from .digits import HELD_OUT, load_digits_16
from .grid import labelled_grid
from .readme import replace_section

REPO = Path(__file__).resolve().parents[1]
RHOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7)
# Distinct samplers only: ComfyUI's `ddim` is its Euler step.
SAMPLERS = ("euler", "heun", "dpmpp_2m", "uni_pc", "euler_ancestral")
STEPS = (4, 6, 10)
SELECTION_SEEDS = (0, 1, 2)
CONFIRMATION_SEEDS = tuple(range(1000, 1008))
ALPHA = 0.05
MIN_EFFECT = 0.01  # of the unpatched distance
TEST = "paired one-sided t test"
FLOOR_DRAWS = 20
GRID = {"sampler": "euler", "steps": 10, "rhos": (1.0, 0.9, 0.8, 0.7), "shown": 12}
HELP_PAGES = (REPO / "web" / "docs" / "SkipTuning.md", REPO / "web" / "docs" / "SkipTuningAdvanced.md")


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


def run_cells(sweep, plan, seeds, count, desc):
    """plan: {(sampler, steps): [rho, ...]}. Returns {(sampler, steps, rho): {"fd": [per seed], "confidence": [...]}}."""
    models = {}
    results = {}
    for (sampler, steps), seed in tqdm(list(itertools.product(plan, seeds)), desc=desc, unit="cell"):
        for rho in plan[(sampler, steps)]:
            model = models.setdefault(rho, sweep.patched(rho))
            scores = sweep.score(model, sampler, steps, seed, count)
            entry = results.setdefault((sampler, steps, rho), {"fd": [], "confidence": []})
            entry["fd"].append(scores["fd"])
            entry["confidence"].append(scores["confidence"])
    return results


def select(results, rhos, cells):
    """Per (sampler, steps): the rho with the lowest mean distance on the selection seeds."""
    return {cell: min(rhos, key=lambda r: statistics.mean(results[(*cell, r)]["fd"])) for cell in cells}


def paired_verdict(off, tuned):
    """Gains off - tuned per seed, the paired one-sided t tests both ways, and the verdict under ALPHA and
    MIN_EFFECT."""
    gains = [a - b for a, b in zip(off, tuned)]
    gain, gain_sd = mean_sd(gains)
    p_better = float(stats.ttest_rel(off, tuned, alternative="greater").pvalue)
    p_worse = float(stats.ttest_rel(off, tuned, alternative="less").pvalue)
    floor = MIN_EFFECT * statistics.mean(off)
    verdict = ("helps" if p_better < ALPHA and gain >= floor else
               "hurts" if p_worse < ALPHA and -gain >= floor else "no clear effect")
    return {"gain": gain, "gain_sd": gain_sd, "p_better": p_better, "p_worse": p_worse,
            "seeds_better": sum(g > 0 for g in gains), "verdict": verdict}


def confirm(results, picks):
    """One row per (cell, tested rho): the pick and the default, each against rho 1 on the confirmation seeds."""
    rows = []
    for (sampler, steps), pick in picks.items():
        off = results[(sampler, steps, 1.0)]["fd"]
        for rho in sorted({pick, DEFAULT_RHO_BOTTOM} - {1.0}, reverse=True):
            tuned = results[(sampler, steps, rho)]["fd"]
            role = " and ".join(name for name, value in (("pick", pick), ("default", DEFAULT_RHO_BOTTOM)) if value == rho)
            rows.append({"sampler": sampler, "steps": steps, "rho_bottom": rho, "role": role,
                         "fd_off": statistics.mean(off), "fd_tuned": statistics.mean(tuned),
                         **paired_verdict(off, tuned)})
    return rows


def measurements(confirmed, seeds, count, command):
    """presets.json: confirmed picks as presets, confirmed harms as not recommended, each with its evidence."""
    entries = []
    for row in confirmed:
        if row["verdict"] == "helps" and "pick" in row["role"]:
            verdict, p = RECOMMENDED, row["p_better"]
        elif row["verdict"] == "hurts":
            verdict, p = NOT_RECOMMENDED, row["p_worse"]
        else:
            continue
        entries.append({"sampler": row["sampler"], "steps": row["steps"], "rho_top": 1.0, "rho_bottom": row["rho_bottom"],
                        "start_percent": 0.0, "end_percent": 1.0, "verdict": verdict, "fd_off": round(row["fd_off"], 3),
                        "fd_tuned": round(row["fd_tuned"], 3), "gain": round(row["gain"], 3),
                        "gain_sd": round(row["gain_sd"], 3), "seeds_better": row["seeds_better"], "seeds": list(seeds),
                        "samples_per_seed": count, "test": TEST, "p": p, "alpha": ALPHA, "min_effect": MIN_EFFECT,
                        "model": "lab_models/digits16.safetensors", "command": command})
    return entries


def pixel_statistics(images):
    """Grey level, contrast, ink and colour of images in [-1, 1]: what a viewer sees change with rho."""
    grey = images.mean(1)
    return {"mean": float(grey.mean()), "std": float(grey.std()), "ink": float((grey > 0).float().mean()),
            "colour": float((images - grey[:, None]).abs().mean())}


def to_uint8(images):
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()


def same_noise_grid(sweep, seed, count):
    """The grid's rows (one per rho, same noise) and each rho's pixel statistics, with real digits for scale."""
    train, _ = load_digits_16("train")
    rows, pixels = [("real digits", to_uint8(train[:GRID["shown"]]))], {"real digits": pixel_statistics(train)}
    for rho in GRID["rhos"]:
        images = sweep.samples(sweep.patched(rho), GRID["sampler"], GRID["steps"], seed, count)
        rows.append((f"rho_bottom {rho:g}", to_uint8(images[:GRID["shown"]])))
        pixels[f"rho_bottom {rho:g}"] = pixel_statistics(images)
    return rows, pixels


def estimator_floor(quality, count, draws):
    """Real training digits scored like a cell: `draws` draws of `count` (mean ± sd), and all of them."""
    train, _ = load_digits_16("train")
    return {"count": count, "draws": draws,
            "fd": mean_sd([quality.real_digits(count, seed)["fd"] for seed in range(draws)]),
            "all": len(train), "fd_all": quality.score(train)["fd"]}


def plot(results, rhos, samplers, steps_list, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sampler in samplers:
        figure, axis = plt.subplots(figsize=(6, 3.5))
        for steps in steps_list:
            means, sds = zip(*(mean_sd(results[(sampler, steps, r)]["fd"]) for r in rhos))
            axis.errorbar(rhos, means, yerr=sds, marker="o", capsize=3, label=f"{steps} steps")
        axis.set(xlabel="rho_bottom (rho_top = 1)", ylabel="Fréchet distance (lower is better)",
                 title=f"digits model, {sampler} (selection seeds)")
        axis.invert_xaxis()
        # Beside the axes, not on them: inside, the legend covered the 4-step error bars.
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        figure.tight_layout()
        path = out_dir / f"quality_{sampler}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


def _cells(rows):
    return "; ".join(f"{r['sampler']} {r['steps']} steps at rho_bottom {r['rho_bottom']:g} "
                     f"({r['gain']:+.2f} ± {r['gain_sd']:.2f}, {r['seeds_better']}/{{n}} seeds better)" for r in rows)


def summary(confirmed, n):
    """The results in words, written from the confirmation rows only."""
    lines = []
    for verdict, opening in (("helps", "**Confirmed gains**"), ("hurts", "**Confirmed harm**"),
                             ("no clear effect", "**No clear effect**")):
        rows = [r for r in confirmed if r["verdict"] == verdict]
        if rows:
            lines.append(f"- {opening} ({len(rows)} of {len(confirmed)} tested settings): "
                         + _cells(rows).replace("{n}", str(n)) + ".")
    default = [r for r in confirmed if "default" in r["role"]]
    counts = {v: sum(r["verdict"] == v for r in default) for v in ("helps", "hurts", "no clear effect")}
    lines.append(f"- The node's default rho_bottom {DEFAULT_RHO_BOTTOM:g}: helped in {counts['helps']}, hurt in "
                 f"{counts['hurts']} and had no clear effect in {counts['no clear effect']} of {len(default)} "
                 "sampler and step count cells.")
    return lines


def markdown(selection, picks, confirmed, rhos, samplers, steps_list, seeds, count, minutes, parameters, floor,
             pixels, command, full):
    sel, conf = seeds
    lines = [f"Measured by `.venv/bin/python -m skip_tuning_lab.quality_sweep{(' ' + command) if command else ''}` "
             f"on the digits model shipped in `lab_models/` (16×16 pixels, {parameters / 1e6:.2f} M parameters; see "
             f"its model card), CFG 1, scheduler `normal`, rho_top 1, the whole run; {count} samples per seed and "
             f"setting, scored on their own by the Fréchet distance (FD) of classifier features to {HELD_OUT} "
             f"held-out digits (lower is better). Selection on seeds {', '.join(map(str, sel))}; confirmation on seeds "
             f"{conf[0]}-{conf[-1]} ({len(conf)}), never used for selection; test: {TEST} of the per-seed gains "
             f"(FD off − FD tuned), alpha {ALPHA}, minimum effect {MIN_EFFECT:.0%} of FD off. The run took "
             f"{minutes:.0f} minutes." + ("" if full else " **A partial run** (fewer cells, seeds or samples than "
                                                         "the full one)."),
             "", f"**The estimator.** {floor['count']} real training digits score FD {floor['fd'][0]:.2f} ± "
             f"{floor['fd'][1]:.2f} (mean ± sd over {floor['draws']} draws); all {floor['all']} score "
             f"{floor['fd_all']:.2f}, so at {floor['count']} samples the distance carries about "
             f"{floor['fd'][0] - floor['fd_all']:.1f} points of small-sample bias. Comparisons are paired (same "
             "noise, same sample size), which cancels most of it.", "",
             "**What the confirmation says**:", "", *summary(confirmed, len(conf)), "",
             "**Confirmation** (seeds never used for selection; gain = FD off − FD tuned, mean ± sd over seeds):", "",
             "| sampler | steps | rho_bottom | tested as | FD off | FD tuned | gain | seeds better | p (better) | "
             "p (worse) | verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in confirmed:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['rho_bottom']:g} | {r['role']} | {r['fd_off']:.2f} | "
                     f"{r['fd_tuned']:.2f} | {r['gain']:+.2f} ± {r['gain_sd']:.2f} | {r['seeds_better']}/{len(conf)} | "
                     f"{r['p_better']:.3g} | {r['p_worse']:.3g} | {r['verdict']} |")
    lines += ["", f"**Same noise, rising strength** ({GRID['sampler']}, {GRID['steps']} steps, seed {conf[0]}; top row: "
              "real digits):", "", "![same-noise grid](docs/quality_grid.png)", "",
              f"Pixel statistics over the {count} samples (grey level in [-1, 1]; ink: share of pixels above 0; colour: "
              "mean distance of the channels from their grey, 0 for real digits):", "",
              "| images | mean | std (contrast) | ink | colour |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {p['mean']:.3f} | {p['std']:.3f} | {p['ink']:.3f} | {p['colour']:.3f} |"
              for name, p in pixels.items()]
    lines += ["", "**Selection** (FD mean ± sd over the selection seeds; **bold**: the pick):", ""]
    for sampler in samplers:
        lines += [f"*{sampler}*", "", "| steps | " + " | ".join(f"rho_bottom {r:g}" for r in rhos) + " |",
                  "| --- |" + " --- |" * len(rhos)]
        for steps in steps_list:
            cells = []
            for r in rhos:
                text = "{:.2f} ± {:.2f}".format(*mean_sd(selection[(sampler, steps, r)]["fd"]))
                cells.append(f"**{text}**" if picks[(sampler, steps)] == r else text)
            lines.append(f"| {steps} | " + " | ".join(cells) + " |")
        lines += ["", f"![{sampler}](docs/quality_{sampler}.png)", ""]
    return "\n".join(lines)


def lab_arguments(description, quick_help, quick_checks):
    """The options of the quality commands (this one and preset_recheck): (parser, arguments). A --quick run
    only checks the pipeline, so it never writes README."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--samples", type=int, default=334, help="samples per seed and setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "lab_output" / "quality")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    if args.quick and args.update_readme:
        parser.error(f"--quick checks the pipeline on {quick_checks}; its figures never go into README")
    return parser, args


def main():
    _, args = lab_arguments(__doc__, "one small cell (euler, 4 steps, rho 1 and 0.8)", "one small cell")
    torch.set_num_threads(args.threads)
    boot_comfy()
    started = time.monotonic()
    if args.quick:
        rhos, samplers, steps_list, sel, conf, count, draws = (1.0, 0.8), ("euler",), (4,), (0,), (1000, 1001), 64, 3
    else:
        rhos, samplers, steps_list, sel, conf, count, draws = (RHOS, SAMPLERS, STEPS, SELECTION_SEEDS,
                                                               CONFIRMATION_SEEDS, args.samples, FLOOR_DRAWS)
    args.out.mkdir(parents=True, exist_ok=True)
    sweep = Sweep()
    cells = list(itertools.product(samplers, steps_list))
    selection = run_cells(sweep, {cell: rhos for cell in cells}, sel, count, "selection")
    picks = select(selection, rhos, cells)
    plan = {cell: sorted({1.0, pick, DEFAULT_RHO_BOTTOM}, reverse=True) for cell, pick in picks.items()}
    confirmed = confirm(run_cells(sweep, plan, conf, count, "confirmation"), picks)
    rows, pixels = same_noise_grid(sweep, conf[0], count)
    floor = estimator_floor(sweep.quality, count, draws)
    minutes = (time.monotonic() - started) / 60
    parameters = sum(p.numel() for p in sweep.model.model.diffusion_model.parameters())
    command = shlex.join(sys.argv[1:])
    full = not args.quick and count >= 334
    text = markdown(selection, picks, confirmed, rhos, samplers, steps_list, (sel, conf), count, minutes, parameters,
                    floor, pixels, command, full)
    entries = measurements(confirmed, conf, count, f"python -m skip_tuning_lab.quality_sweep {command}".strip())
    labelled_grid(rows).save(args.out / "quality_grid.png")
    plots = plot(selection, rhos, samplers, steps_list, args.out)
    report = {"selection": [{"sampler": s, "steps": n, "rho_bottom": r, **v} for (s, n, r), v in selection.items()],
              "picks": [{"sampler": s, "steps": n, "rho_bottom": r} for (s, n), r in picks.items()],
              "confirmation": confirmed, "selection_seeds": list(sel), "confirmation_seeds": list(conf),
              "samples_per_seed": count, "minutes": minutes, "floor": floor, "pixels": pixels, "presets": entries}
    (args.out / "quality.json").write_text(json.dumps(report, indent=1))
    (args.out / "quality.md").write_text(text)
    print(text)
    if args.update_readme:
        docs = REPO / "docs"
        for path in [*plots, args.out / "quality_grid.png"]:
            (docs / path.name).write_bytes(path.read_bytes())
        replace_section(REPO / "README.md", "quality", text)
        PRESETS_FILE.write_text(json.dumps(entries, indent=1) + "\n")
        for page in HELP_PAGES:
            replace_section(page, "presets", presets_markdown(entries))


if __name__ == "__main__":
    main()
