"""Residual tuning on the lab's DiT, measured before any node ships it.

The blog this project started from suggests that a DiT's residual (identity) branches play the role a
U-Net's skips play in Skip Tuning, so that scaling them might help few-step sampling the same way. Here each
transformer block's output becomes `rho_l * x_in + branch` (skip_tuning_core.residual, the recipe of the
Residual Tuning node: `out - (1 - rho_l) * x_in` around the host's own block, through ComfyUI's
`patches_replace["dit"]` double/single block replacements on a clone), rho_l linear in depth from the first
block to the last, on all blocks or only the double- or single-stream ones. The protocol is the quality benchmark's (selection seeds, held-out confirmation seeds,
paired one-sided t test, minimum effect, estimator floor); README's section is written from the run.

    .venv/bin/python -m skip_tuning_lab.residual_sweep                   # lab_output/quality/
    .venv/bin/python -m skip_tuning_lab.residual_sweep --update-readme   # and README's section
    .venv/bin/python -m skip_tuning_lab.residual_sweep --quick           # one small cell
    .venv/bin/python -m skip_tuning_lab.residual_sweep --recheck --update-readme
                                        # each confirmed pick again on seeds no run has used (preset_recheck's)
"""
import itertools
import json
import shlex
import statistics
import sys
import time

import torch

from skip_tuning_core.residual import residual_tuned
from skip_tuning_core.presets import FINDINGS_FILE, load_findings, load_measurements, presets_markdown

from .comfy_host import boot_comfy
from .digits import HELD_OUT
from .preset_recheck import RECHECK_SEEDS
from .quality_sweep import (ALPHA, CONFIRMATION_SEEDS, FLOOR_DRAWS, HELP_PAGES, MIN_EFFECT, REPO, SELECTION_SEEDS,
                            TEST, Sweep,
                            estimator_floor, gain_text, interval, lab_arguments, mean_sd, paired_verdict,
                            parse_lab_arguments, run_cells, select)
from .readme import replace_section

MODEL = "digits16_dit.safetensors"
SAMPLERS = ("euler", "dpmpp_2m", "uni_pc", "euler_ancestral")
STEPS = (4, 6, 10)
OFF = "off"
# name: (rho of the first block, rho of the last, which blocks)
SETTINGS = {
    OFF: (1.0, 1.0, "all"),
    "all 0.95": (0.95, 0.95, "all"), "all 0.9": (0.9, 0.9, "all"), "all 1.05": (1.05, 1.05, "all"),
    "first 0.9 to last 1": (0.9, 1.0, "all"), "double 0.95": (0.95, 0.95, "double"),
    "single 0.95": (0.95, 0.95, "single"),
}


class ResidualSweep(Sweep):
    """The quality benchmark's sampling and scoring, on the DiT, with residual tuning as the patch."""

    scheduler = "simple"  # what Flux workflows use

    def patched(self, setting):
        return residual_tuned(self.model, *SETTINGS[setting])  # the node's own recipe, whole run


def confirm(results, picks):
    rows = []
    for (sampler, steps), pick in picks.items():
        if pick == OFF:
            continue
        off, tuned = results[(sampler, steps, OFF)]["fd"], results[(sampler, steps, pick)]["fd"]
        rows.append({"sampler": sampler, "steps": steps, "setting": pick, "fd_off": statistics.mean(off),
                     "fd_tuned": statistics.mean(tuned), **paired_verdict(off, tuned)})
    return rows


def markdown(report):
    selection = {(r["sampler"], r["steps"], r["setting"]): r for r in report["selection"]}
    picks = {(r["sampler"], r["steps"]): r["setting"] for r in report["picks"]}
    settings = list(dict.fromkeys(s for _, _, s in selection))
    conf, floor, confirmed = report["confirmation_seeds"], report["floor"], report["confirmation"]
    helps = [r for r in confirmed if r["verdict"] == "helps"]
    hurts = [r for r in confirmed if r["verdict"] == "hurts"]
    command = report["command"]
    lines = [f"Measured by `.venv/bin/python -m skip_tuning_lab.residual_sweep{(' ' + command) if command else ''}` "
             f"on the lab's DiT (`lab_models/{MODEL}`, ComfyUI's Flux classes, {report['parameters'] / 1e6:.2f} M "
             f"parameters; see its card), CFG 1, scheduler `simple`, the whole run; {report['samples_per_seed']} "
             f"samples per seed and setting, FD of classifier features to {HELD_OUT} held-out digits (lower is "
             f"better). Selection on seeds {', '.join(map(str, report['selection_seeds']))} among {len(settings) - 1} "
             f"settings; the pick of each cell (when not off) confirmed on seeds {conf[0]}-{conf[-1]} ({len(conf)}), "
             f"{TEST}, alpha {ALPHA}, minimum effect {MIN_EFFECT:.0%} of FD off. The estimator: "
             f"{floor['count']} real digits score {floor['fd'][0]:.2f} ± {floor['fd'][1]:.2f}. The run took "
             f"{report['minutes']:.0f} minutes." + ("" if report["full"] else " **A partial run.**"), "",
             f"**Result**: {len(helps)} of {len(picks)} sampler and step count cells have a setting confirmed to "
             f"help on held-out seeds, {len(hurts)} a pick that hurts there, and "
             f"{sum(p == OFF for p in picks.values())} picked no tuning at all."]
    if helps:
        lines.append("Confirmed: " + "; ".join(f"{r['sampler']} {r['steps']} steps, {r['setting']}: "
                                               f"{gain_text(r, len(conf))}" for r in helps) + ".")
    lines += ["", "| sampler | steps | pick | FD off | FD tuned | gain (95% CI) | seeds better | p (better) | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in confirmed:
        low, high = interval({**r, "seeds": len(conf)})
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['setting']} | {r['fd_off']:.2f} | {r['fd_tuned']:.2f} | "
                     f"{r['gain']:+.2f} ({low:+.2f} to {high:+.2f}) | {r['seeds_better']}/{len(conf)} | "
                     f"{r['p_better']:.3g} | {r['verdict']} |")
    lines += ["", "**Selection** (FD mean ± sd over the selection seeds; **bold**: the pick; settings name the rho "
              "of the first and the last block, linear between):", "",
              "| sampler | steps | " + " | ".join(settings) + " |", "| --- | --- |" + " --- |" * len(settings)]
    for (sampler, steps), pick in picks.items():
        cells = []
        for setting in settings:
            text = "{:.2f} ± {:.2f}".format(*mean_sd(selection[(sampler, steps, setting)]["fd"]))
            cells.append(f"**{text}**" if setting == pick else text)
        lines.append(f"| {sampler} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finding(report):
    """The run in one sentence (and its recheck in another), for the message DiT users get and the help pages."""
    rows, picks = report["confirmation"], report["picks"]
    helps = [r for r in rows if r["verdict"] == "helps"]
    hurts = [r for r in rows if r["verdict"] == "hurts"]
    confirmed = "; ".join(f"{r['sampler']} {r['steps']} steps, {r['setting']}: {r['gain']:+.2f}" for r in helps)
    text = (f"Residual tuning (x_out = rho * x_in + branch in each block, the suggested counterpart for DiTs) was "
            f"measured on the lab's small Flux-class DiT: a setting was confirmed to help on held-out seeds in "
            f"{len(helps)} of {len(picks)} sampler and step count cells{f' ({confirmed})' if confirmed else ''}, the "
            f"pick hurt in {len(hurts)} ({report['samples_per_seed']} samples on each of "
            f"{len(report['confirmation_seeds'])} seeds; README, 'Residual tuning on a DiT').")
    again = report.get("recheck")
    if again:
        seeds = again["seeds"]
        text += (f" Sampled again on seeds {seeds[0]}-{seeds[-1]}, {sum(r['sign_kept'] for r in again['rows'])} of "
                 f"{len(again['rows'])} kept their sign, {sum(r['significant'] for r in again['rows'])} significantly.")
    return text


def recheck(report, seeds, count, quick=False):
    """Each confirmed pick (and harm) against off again on `seeds`, with the same test: the gain there, its
    interval, and whether it kept its sign."""
    rows = [r for r in report["confirmation"] if r["verdict"] in ("helps", "hurts")][:1 if quick else None]
    results = run_cells(ResidualSweep(MODEL), {(r["sampler"], r["steps"]): [OFF, r["setting"]] for r in rows}, seeds,
                        count, "recheck")
    out = []
    for r in rows:
        new = paired_verdict(results[(r["sampler"], r["steps"], OFF)]["fd"],
                             results[(r["sampler"], r["steps"], r["setting"])]["fd"])
        helps = r["verdict"] == "helps"
        p = new["p_better"] if helps else new["p_worse"]
        kept = (new["gain"] > 0) == helps
        out.append({key: r[key] for key in ("sampler", "steps", "setting", "verdict", "gain")} | {
            "new_gain": new["gain"], "new_gain_sd": new["gain_sd"], "seeds_better": new["seeds_better"], "p": p,
            "ci95": list(interval({**new, "seeds": len(seeds)})), "sign_kept": kept, "significant": kept and p < ALPHA})
    return {"seeds": list(seeds), "samples_per_seed": count, "rows": out}


def recheck_markdown(again, command, minutes):
    rows, seeds = again["rows"], again["seeds"]
    lines = [f"Measured by `.venv/bin/python -m skip_tuning_lab.residual_sweep {command}`: each pick of the run above "
             f"that was confirmed (or found to hurt) sampled again against off on seeds {seeds[0]}-{seeds[-1]} "
             f"({len(seeds)}, used neither for selection nor for confirmation), {again['samples_per_seed']} samples "
             f"per seed and setting, the same test. **{sum(r['sign_kept'] for r in rows)} of {len(rows)} kept their "
             f"sign, {sum(r['significant'] for r in rows)} significantly** (one-sided, alpha {ALPHA}). The run took "
             f"{minutes:.0f} minutes.", "",
             "| sampler | steps | setting | gain when confirmed | gain on the new seeds (95% CI) | new / confirmed | "
             "seeds better | p | sign kept |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        low, high = r["ci95"]
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['setting']} | {r['gain']:+.2f} | {r['new_gain']:+.2f} "
                     f"({low:+.2f} to {high:+.2f}) | {r['new_gain'] / r['gain']:.0%} | {r['seeds_better']}/{len(seeds)} "
                     f"| {r['p']:.3g} | {'yes' if r['sign_kept'] else '**no**'} |")
    return "\n".join(lines)


def main_recheck(args):
    started = time.monotonic()
    report_path = REPO / "docs" / "quality_residual.json"
    report = json.loads(report_path.read_text())
    again = recheck(report, RECHECK_SEEDS[:2] if args.quick else RECHECK_SEEDS, 64 if args.quick else args.samples,
                    args.quick)
    text = recheck_markdown(again, shlex.join(sys.argv[1:]), (time.monotonic() - started) / 60)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "residual_recheck.md").write_text(text)
    print(text)
    if args.update_readme:
        report["recheck"] = again
        report_path.write_text(json.dumps(report, indent=1) + "\n")
        replace_section(REPO / "README.md", "residual-recheck", text)
        FINDINGS_FILE.write_text(json.dumps({**load_findings(), "residual": finding(report)}, indent=1) + "\n")
        for page in HELP_PAGES:
            replace_section(page, "presets", presets_markdown(load_measurements()))


def main():
    parser = lab_arguments(__doc__, "one small cell (euler, 4 steps, off and all 0.95)", "one small cell")
    parser.add_argument("--recheck", action="store_true",
                        help="sample the committed run's confirmed picks again on new seeds (docs/quality_residual.json)")
    args = parse_lab_arguments(parser, "one small cell")
    torch.set_num_threads(args.threads)
    boot_comfy()
    if args.recheck:
        return main_recheck(args)
    started = time.monotonic()
    if args.quick:
        settings, samplers, steps_list, sel, conf, count, draws = ((OFF, "all 0.95"), SAMPLERS[:1], STEPS[:1], (0,),
                                                                   (1000, 1001), 64, 3)
    else:
        settings, samplers, steps_list, sel, conf, count, draws = (tuple(SETTINGS), SAMPLERS, STEPS, SELECTION_SEEDS,
                                                                   CONFIRMATION_SEEDS, args.samples, FLOOR_DRAWS)
    sweep = ResidualSweep(MODEL)
    cells = list(itertools.product(samplers, steps_list))
    selection = run_cells(sweep, {cell: settings for cell in cells}, sel, count, "selection")
    picks = select(selection, settings, cells)
    plan = {cell: [OFF, pick] for cell, pick in picks.items() if pick != OFF}
    confirmed = confirm(run_cells(sweep, plan, conf, count, "confirmation"), picks)
    report = {"command": shlex.join(sys.argv[1:]), "full": not args.quick and count >= 334,
              "parameters": sum(p.numel() for p in sweep.model.model.diffusion_model.parameters()),
              "selection": [{"sampler": s, "steps": n, "setting": r, **v} for (s, n, r), v in selection.items()],
              "picks": [{"sampler": s, "steps": n, "setting": r} for (s, n), r in picks.items()],
              "confirmation": confirmed, "selection_seeds": list(sel), "confirmation_seeds": list(conf),
              "samples_per_seed": count, "floor": estimator_floor(sweep.quality, count, draws),
              "minutes": (time.monotonic() - started) / 60}
    text = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "residual.json").write_text(json.dumps(report, indent=1))
    (args.out / "residual.md").write_text(text)
    print(text)
    if args.update_readme:
        (REPO / "docs" / "quality_residual.json").write_text(json.dumps(report, indent=1) + "\n")
        replace_section(REPO / "README.md", "residual", text)
        FINDINGS_FILE.write_text(json.dumps({**load_findings(), "residual": finding(report)}, indent=1) + "\n")
        for page in HELP_PAGES:
            replace_section(page, "presets", presets_markdown(load_measurements()))


if __name__ == "__main__":
    main()
