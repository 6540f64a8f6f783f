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
    .venv/bin/python -m skip_tuning_lab.quality_sweep --run distilled   # the LCM student at 1-8 steps
    .venv/bin/python -m skip_tuning_lab.quality_sweep --run long        # the digits model at 20 and 30 steps

Each run writes its own README section and replaces only its own entries in presets.json.
"""
import argparse
import dataclasses
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
from skip_tuning_core.presets import (FINDINGS_FILE, NOT_RECOMMENDED, PRESETS_FILE, RECOMMENDED, load_findings,
                                      load_measurements, presets_markdown)

from .comfy_host import boot_comfy, load_pack
from .digits import HELD_OUT, load_digits_16
from .grid import labelled_grid
from .readme import replace_section

REPO = Path(__file__).resolve().parents[1]
RHOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7)


@dataclasses.dataclass(frozen=True)
class Run:
    """One benchmark: a model, how it is sampled, its grid, and where its results go."""
    name: str
    model: str
    samplers: tuple
    steps: tuple
    title: str
    section: str  # README's generated section
    label: str  # the model and step counts in a sentence that users read
    sampling: str = ""  # ComfyUI's ModelSamplingDiscrete setting, for a model that needs one ("lcm")
    figures: bool = True  # the same-noise grid and pixel statistics (the base run only)


RUNS = {run.name: run for run in (
    # Distinct samplers only: ComfyUI's `ddim` is its Euler step.
    Run("base", "digits16.safetensors", ("euler", "heun", "dpmpp_2m", "uni_pc", "euler_ancestral"), (4, 6, 10),
        "the digits model shipped in `lab_models/`", "quality",
        "The digits model at 4-10 steps"),
    Run("distilled", "digits16_lcm.safetensors", ("lcm", "euler_ancestral"), (1, 2, 4, 8),
        "the few-step student `lab_models/digits16_lcm.safetensors` (latent consistency distillation of the digits "
        "model; ModelSamplingDiscrete `lcm`)", "quality-distilled",
        "An LCM-distilled student of the digits model at 1-8 steps (`lcm` sampling)", sampling="lcm", figures=False),
    Run("long", "digits16.safetensors", ("euler", "dpmpp_2m", "uni_pc", "euler_ancestral"), (20, 30),
        "the digits model shipped in `lab_models/`, at the step counts most people run", "quality-long",
        "The digits model at 20 and 30 steps", figures=False),
)}
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

    scheduler = "normal"

    def __init__(self, model_name="digits16.safetensors", sampling=""):
        import comfy.sample

        from .quality import DigitsQuality

        self.sample_fn = comfy.sample.sample
        self.pack = load_pack()
        lab = self.pack.nodes.lab
        self.model, _ = lab.load_digits_model(model_name)
        if sampling:  # as a user wires it: ModelSamplingDiscrete before Skip Tuning
            from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

            self.model = ModelSamplingDiscrete().patch(self.model, sampling, False)[0]
        (self.any_digit,) = lab.digit_conditioning("any")
        self.quality = DigitsQuality()

    def patched(self, rho_bottom, start=0.0, end=1.0):
        return self.pack.nodes.skip_tuning.SkipTuning().apply(self.model, 1.0, rho_bottom, start, end)[0]

    @torch.inference_mode()
    def samples(self, model, sampler, steps, seed, count):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(count, 3, 16, 16, generator=generator)
        latent = torch.zeros(count, 3, 16, 16)
        return self.sample_fn(model, noise, steps, 1.0, sampler, self.scheduler, self.any_digit, self.any_digit, latent,
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


def measurements(confirmed, seeds, count, command, run):
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
                        "gain_sd": round(row["gain_sd"], 3), "ci95": list(interval({**row, "seeds": seeds})),
                        "seeds_better": row["seeds_better"], "seeds": list(seeds),
                        "samples_per_seed": count, "test": TEST, "p": p, "alpha": ALPHA, "min_effect": MIN_EFFECT,
                        "model": f"lab_models/{run.model}", "sampling": run.sampling or "eps", "run": run.name,
                        "command": command})
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


def figure_name(run, sampler):
    return f"quality_{sampler}.png" if run.name == "base" else f"quality_{run.name}_{sampler}.png"


def plot(results, rhos, samplers, steps_list, out_dir, run):
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
                 title=f"{'digits model' if run.name == 'base' else run.model}, {sampler} (selection seeds)")
        axis.invert_xaxis()
        # Beside the axes, not on them: inside, the legend covered the 4-step error bars.
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        figure.tight_layout()
        path = out_dir / figure_name(run, sampler)
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


def interval(row):
    """The 95 % t interval of the mean gain, recomputed from the mean, sd and seed count a report stores."""
    n = row["seeds"] if isinstance(row["seeds"], int) else len(row["seeds"])
    half = float(stats.t.ppf(0.975, n - 1)) * row["gain_sd"] / n**0.5
    return round(row["gain"] - half, 3), round(row["gain"] + half, 3)


def gain_text(row, n):
    low, high = interval({**row, "seeds": n})
    return f"{row['gain']:+.2f} (95% CI {low:+.2f} to {high:+.2f}, {row['seeds_better']}/{n} seeds better)"


def steps_text(steps):
    return f"{steps} step{'' if steps == 1 else 's'}"


def _cells(rows, n):
    return "; ".join(f"{r['sampler']} {steps_text(r['steps'])} at rho_bottom {r['rho_bottom']:g} {gain_text(r, n)}"
                     for r in rows)


def summary(confirmed, n):
    """The results in words, written from the confirmation rows only."""
    lines = []
    for verdict, opening in (("helps", "**Confirmed gains**"), ("hurts", "**Confirmed harm**"),
                             ("no clear effect", "**No clear effect**")):
        rows = [r for r in confirmed if r["verdict"] == verdict]
        if rows:
            lines.append(f"- {opening} ({len(rows)} of {len(confirmed)} tested settings): {_cells(rows, n)}.")
    default = [r for r in confirmed if "default" in r["role"]]
    counts = {v: sum(r["verdict"] == v for r in default) for v in ("helps", "hurts", "no clear effect")}
    lines.append(f"- The node's default rho_bottom {DEFAULT_RHO_BOTTOM:g}: helped in {counts['helps']}, hurt in "
                 f"{counts['hurts']} and had no clear effect in {counts['no clear effect']} of {len(default)} "
                 "sampler and step count cells.")
    return lines


def markdown(report, run):
    """README's section for one run, from its report (what `measure` returns or a committed report file)."""
    selection = {(r["sampler"], r["steps"], r["rho_bottom"]): r for r in report["selection"]}
    picks = {(r["sampler"], r["steps"]): r["rho_bottom"] for r in report["picks"]}
    samplers = list(dict.fromkeys(s for s, _ in picks))
    steps_list = list(dict.fromkeys(n for _, n in picks))
    rhos = list(dict.fromkeys(r for _, _, r in selection))
    sel, conf, count, floor = (report["selection_seeds"], report["confirmation_seeds"], report["samples_per_seed"],
                               report["floor"])
    confirmed, command = report["confirmation"], report["command"]
    lines = [f"Measured by `.venv/bin/python -m skip_tuning_lab.quality_sweep{(' ' + command) if command else ''}` "
             f"on {run.title} (16×16 pixels, {report['parameters'] / 1e6:.2f} M parameters; see its model card), "
             f"CFG 1, scheduler `normal`, rho_top 1, the whole run; {count} samples per seed and "
             f"setting, scored on their own by the Fréchet distance (FD) of classifier features to {HELD_OUT} "
             f"held-out digits (lower is better). Selection on seeds {', '.join(map(str, sel))}; confirmation on seeds "
             f"{conf[0]}-{conf[-1]} ({len(conf)}), never used for selection; test: {TEST} of the per-seed gains "
             f"(FD off − FD tuned), alpha {ALPHA}, minimum effect {MIN_EFFECT:.0%} of FD off. The run took "
             f"{report['minutes']:.0f} minutes." + ("" if report["full"] else
                                                   " **A partial run** (fewer cells, seeds or samples than the full "
                                                   "one)."),
             "", f"**The estimator.** {floor['count']} real training digits score FD {floor['fd'][0]:.2f} ± "
             f"{floor['fd'][1]:.2f} (mean ± sd over {floor['draws']} draws); all {floor['all']} score "
             f"{floor['fd_all']:.2f}, so at {floor['count']} samples the distance carries about "
             f"{floor['fd'][0] - floor['fd_all']:.1f} points of small-sample bias. Comparisons are paired (same "
             "noise, same sample size), which cancels most of it.", "",
             "**What the confirmation says**:", "", *summary(confirmed, len(conf)), "",
             "**Confirmation** (seeds never used for selection; gain = FD off − FD tuned, mean with its two-sided "
             "95% t interval over the seeds; the verdict's test is one-sided at alpha 0.05, so a gain it confirms may "
             "have an interval that reaches just below 0):", "",
             "| sampler | steps | rho_bottom | tested as | FD off | FD tuned | gain (95% CI) | seeds better | "
             "p (better) | p (worse) | verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in confirmed:
        low, high = interval({**r, "seeds": len(conf)})
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['rho_bottom']:g} | {r['role']} | {r['fd_off']:.2f} | "
                     f"{r['fd_tuned']:.2f} | {r['gain']:+.2f} ({low:+.2f} to {high:+.2f}) | "
                     f"{r['seeds_better']}/{len(conf)} | {r['p_better']:.3g} | {r['p_worse']:.3g} | {r['verdict']} |")
    if run.figures:
        lines += ["", f"**Same noise, rising strength** ({GRID['sampler']}, {GRID['steps']} steps, seed {conf[0]}; "
                  "top row: real digits):", "", "![same-noise grid](docs/quality_grid.png)", "",
                  f"Pixel statistics over the {count} samples (grey level in [-1, 1]; ink: share of pixels above 0; "
                  "colour: mean distance of the channels from their grey, 0 for real digits):", "",
                  "| images | mean | std (contrast) | ink | colour |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {name} | {p['mean']:.3f} | {p['std']:.3f} | {p['ink']:.3f} | {p['colour']:.3f} |"
                  for name, p in report["pixels"].items()]
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
        lines += ["", f"![{sampler}](docs/{figure_name(run, sampler)})", ""]
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
    return parser


def parse_lab_arguments(parser, quick_checks):
    args = parser.parse_args()
    if args.quick and args.update_readme:
        parser.error(f"--quick checks the pipeline on {quick_checks}; its figures never go into README")
    return args


def report_file(run):
    """Where a run's report is committed beside its figures, for `--render`."""
    return REPO / "docs" / f"quality_{run.name}.json"


def measure(run, args):
    """Selection, confirmation, the estimator floor (and the base run's grid): the run's report."""
    started = time.monotonic()
    if args.quick:
        rhos, sel, conf, count, draws = (1.0, 0.8), (0,), (1000, 1001), 64, 3
        samplers, steps_list = run.samplers[:1], run.steps[:1]
    else:
        rhos = tuple(sorted({1.0, *args.rhos}, reverse=True))
        samplers, steps_list, sel, conf, count, draws = (run.samplers, run.steps, SELECTION_SEEDS, CONFIRMATION_SEEDS,
                                                         args.samples, FLOOR_DRAWS)
    sweep = Sweep(run.model, run.sampling)
    cells = list(itertools.product(samplers, steps_list))
    selection = run_cells(sweep, {cell: rhos for cell in cells}, sel, count, "selection")
    picks = select(selection, rhos, cells)
    plan = {cell: sorted({1.0, pick, DEFAULT_RHO_BOTTOM}, reverse=True) for cell, pick in picks.items()}
    confirmed = confirm(run_cells(sweep, plan, conf, count, "confirmation"), picks)
    pixels = {}
    if run.figures:
        rows, pixels = same_noise_grid(sweep, conf[0], count)
        labelled_grid(rows).save(args.out / "quality_grid.png")
    plot(selection, rhos, samplers, steps_list, args.out, run)
    return {"run": run.name, "command": shlex.join(sys.argv[1:]),
            "full": not args.quick and count >= 334 and set(RHOS) <= set(rhos),
            "parameters": sum(p.numel() for p in sweep.model.model.diffusion_model.parameters()),
            "selection": [{"sampler": s, "steps": n, "rho_bottom": r, **v} for (s, n, r), v in selection.items()],
            "picks": [{"sampler": s, "steps": n, "rho_bottom": r} for (s, n), r in picks.items()],
            "confirmation": confirmed, "selection_seeds": list(sel), "confirmation_seeds": list(conf),
            "samples_per_seed": count, "floor": estimator_floor(sweep.quality, count, draws), "pixels": pixels,
            "minutes": (time.monotonic() - started) / 60}


def finding(report, run):
    """The run in one sentence: how often the selected rho_bottom and the default held on new seeds."""
    rows, cells = report["confirmation"], len(report["picks"])
    picks = [r for r in rows if "pick" in r["role"]]
    default = [r for r in rows if "default" in r["role"]]

    def count(group, verdict):
        return sum(r["verdict"] == verdict for r in group)

    helped = ", ".join(f"{r['sampler']} {steps_text(r['steps'])} at {r['rho_bottom']:g}" for r in picks
                       if r["verdict"] == "helps")
    hurt = ", ".join(f"{r['sampler']} {steps_text(r['steps'])} at {r['rho_bottom']:g}" for r in rows
                     if r["verdict"] == "hurts")
    return (f"{run.label}: the best rho_bottom of the selection seeds helped on new seeds in {count(picks, 'helps')} "
            f"of {cells} sampler and step count cells{f' ({helped})' if helped else ''}; a tested setting hurt in "
            f"{len(hurt.split(', ')) if hurt else 0}{f' ({hurt})' if hurt else ''}; the default rho_bottom "
            f"{DEFAULT_RHO_BOTTOM:g} helped in {count(default, 'helps')}, hurt in {count(default, 'hurts')} and had "
            f"no clear effect in {count(default, 'no clear effect')} of {len(default)} "
            f"({report['samples_per_seed']} samples on each of {len(report['confirmation_seeds'])} seeds).")


def same_measurement(entry):
    return tuple(entry.get(key) for key in ("model", "sampling", "sampler", "steps", "rho_bottom", "verdict", "fd_off"))


def update_presets(entries, run, report):
    """presets.json with this run's entries in place of its earlier ones, findings.json with its sentence; the
    help pages follow."""
    earlier = load_measurements()
    # A re-render of the same measurement keeps the recheck preset_recheck wrote for it.
    rechecks = {same_measurement(e): e["recheck"] for e in earlier if "recheck" in e}
    entries = [e for e in earlier if e.get("run", "base") != run.name] + [
        {**e, "recheck": rechecks[same_measurement(e)]} if same_measurement(e) in rechecks else e for e in entries]
    PRESETS_FILE.write_text(json.dumps(entries, indent=1) + "\n")
    findings = {**load_findings(), run.name: finding(report, run)}
    FINDINGS_FILE.write_text(json.dumps(findings, indent=1) + "\n")
    for page in HELP_PAGES:
        replace_section(page, "presets", presets_markdown(entries))


def main():
    parser = lab_arguments(__doc__, "one small cell (the run's first sampler and step count, rho 1 and 0.8)",
                           "one small cell")
    parser.add_argument("--run", choices=sorted(RUNS), default="base", help="which model and grid (default: base)")
    parser.add_argument("--rhos", type=float, nargs="+", default=RHOS,
                        help=f"the rho_bottom values of the selection (default: {' '.join(map(str, RHOS))}; 1 is "
                             "always among them)")
    parser.add_argument("--render", action="store_true",
                        help="sample nothing: rewrite README, presets and help pages from the run's committed report "
                             "(docs/quality_RUN.json)")
    args = parse_lab_arguments(parser, "one small cell")
    run = RUNS[args.run]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        report = json.loads(report_file(run).read_text())
    else:
        torch.set_num_threads(args.threads)
        boot_comfy()
        report = measure(run, args)
        (args.out / f"quality_{run.name}.json").write_text(json.dumps(report, indent=1))
    text = markdown(report, run)
    entries = measurements(report["confirmation"], report["confirmation_seeds"], report["samples_per_seed"],
                           f"python -m skip_tuning_lab.quality_sweep {report['command']}".strip(), run)
    (args.out / f"quality_{run.name}.md").write_text(text)
    print(text)
    if args.update_readme:
        docs = REPO / "docs"
        if not args.render:
            figures = [figure_name(run, s) for s in run.samplers] + (["quality_grid.png"] if run.figures else [])
            for name in figures:
                (docs / name).write_bytes((args.out / name).read_bytes())
            report_file(run).write_text(json.dumps(report, indent=1) + "\n")
        replace_section(REPO / "README.md", run.section, text)
        update_presets(entries, run, report)


if __name__ == "__main__":
    main()
