"""Does each measurement in skip_tuning_core/presets.json keep its sign on seeds no earlier run has used?

Every preset (and every setting listed as not recommended) is sampled again against rho 1 on fresh seeds,
through the same pipeline as the quality benchmark, and gets the same paired test. A recommended preset keeps
its sign when the mean gain on the new seeds is positive, a harm when it is negative. With --update-readme
each entry of presets.json gets its recheck (gain, interval, seeds, significance), which the help pages and the
WebUI tab show beside the confirmed gain.

    .venv/bin/python -m skip_tuning_lab.preset_recheck                   # lab_output/quality/recheck.md
    .venv/bin/python -m skip_tuning_lab.preset_recheck --update-readme   # and README's recheck section
    .venv/bin/python -m skip_tuning_lab.preset_recheck --quick           # two presets, small samples
"""
import json
import shlex
import statistics
import sys
import time

import torch

from skip_tuning_core.presets import PRESETS_FILE, RECOMMENDED, load_measurements, presets_markdown

from .comfy_host import boot_comfy
from .quality_sweep import (ALPHA, HELP_PAGES, REPO, Sweep, interval, lab_arguments, paired_verdict,
                            parse_lab_arguments, run_cells, same_measurement)
from .readme import replace_section

RECHECK_SEEDS = tuple(range(2000, 2008))


def recheck(entries, seeds, count):
    """One row per measurement: its verdict, the gain it recorded, and what the new seeds say (each model sampled
    as its run sampled it)."""
    results = {}
    for model, sampling in dict.fromkeys((e["model"].split("/")[-1], e.get("sampling", "eps")) for e in entries):
        plan = {}
        for entry in entries:
            if (entry["model"].split("/")[-1], entry.get("sampling", "eps")) == (model, sampling):
                plan.setdefault((entry["sampler"], entry["steps"]), {1.0}).add(entry["rho_bottom"])
        sweep = Sweep(model, "" if sampling == "eps" else sampling)
        cells = run_cells(sweep, {cell: sorted(rhos, reverse=True) for cell, rhos in plan.items()}, seeds, count,
                          f"recheck {model}")
        results.update({(model, sampling, *key): value for key, value in cells.items()})
    rows = []
    for entry in entries:
        key = (entry["model"].split("/")[-1], entry.get("sampling", "eps"), entry["sampler"], entry["steps"])
        off, tuned = results[(*key, 1.0)]["fd"], results[(*key, entry["rho_bottom"])]["fd"]
        row = paired_verdict(off, tuned)
        recommended = entry["verdict"] == RECOMMENDED
        p = row["p_better"] if recommended else row["p_worse"]
        rows.append({**{key: entry[key] for key in ("sampler", "steps", "rho_bottom", "verdict", "gain", "gain_sd")},
                     "model": entry["model"], "new": row, "fd_off": statistics.mean(off),
                     "sign_kept": (row["gain"] > 0) == recommended,
                     "recheck": {"gain": round(row["gain"], 3), "gain_sd": round(row["gain_sd"], 3),
                                 "ci95": list(interval({**row, "seeds": len(seeds)})), "seeds": len(seeds),
                                 "seeds_better": row["seeds_better"], "p": p,
                                 "significant": p < ALPHA and (row["gain"] > 0) == recommended}})
    return rows


def markdown(rows, seeds, count, minutes, command, run=None):
    kept = sum(row["sign_kept"] for row in rows)
    invocation = f"python -m skip_tuning_lab.preset_recheck {command}".strip()
    lines = [f"Measured by `.venv/bin/{invocation}`: every measurement "
             f"{f'of the {run} run ' if run else ''}in `skip_tuning_core/presets.json` sampled again on seeds "
             f"{seeds[0]}-{seeds[-1]} ({len(seeds)}, used neither for selection nor for confirmation), {count} "
             f"samples per seed and setting, same pipeline and test. **{kept} of {len(rows)} kept their sign.** "
             f"The run took {minutes:.0f} minutes.", "",
             "| model | sampler | steps | rho_bottom | listed as | gain when confirmed | gain on the new seeds (95% CI) | "
             "new / confirmed | seeds better | p (one-sided, its direction) | sign kept |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        new = row["new"]
        p = new["p_better"] if row["verdict"] == RECOMMENDED else new["p_worse"]
        low, high = row["recheck"]["ci95"]
        lines.append(f"| {row['model'].split('/')[-1]} | {row['sampler']} | {row['steps']} | {row['rho_bottom']:g} | "
                     f"{row['verdict']} | {row['gain']:+.2f} ± {row['gain_sd']:.2f} | {new['gain']:+.2f} ({low:+.2f} "
                     f"to {high:+.2f}) | {new['gain'] / row['gain']:.0%} | {new['seeds_better']}/{len(seeds)} | "
                     f"{p:.3g} | {'yes' if row['sign_kept'] else '**no**'} |")
    return "\n".join(lines)


def main():
    parser = lab_arguments(__doc__, "the first two measurements, 64 samples, two seeds", "two presets")
    parser.add_argument("--run", help="recheck only the measurements of this quality run (base, distilled, long)")
    args = parse_lab_arguments(parser, "two presets")
    entries = [e for e in load_measurements() if args.run in (None, e.get("run", "base"))]
    if not entries:
        parser.error("skip_tuning_core/presets.json holds no measurement: run skip_tuning_lab.quality_sweep first")
    seeds, count = (RECHECK_SEEDS[:2], 64) if args.quick else (RECHECK_SEEDS, args.samples)
    torch.set_num_threads(args.threads)
    boot_comfy()
    started = time.monotonic()
    rows = recheck(entries[:2] if args.quick else entries, seeds, count)
    text = markdown(rows, seeds, count, (time.monotonic() - started) / 60, shlex.join(sys.argv[1:]), args.run)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recheck.md").write_text(text)
    print(text)
    if args.update_readme:
        replace_section(REPO / "README.md", f"recheck-{args.run}" if args.run else "recheck", text)
        # Read again: a quality run may have rewritten its own entries meanwhile; only those rechecked change.
        rechecked = {same_measurement(entry): row["recheck"] for entry, row in zip(entries, rows)}
        current = [{**e, "recheck": rechecked[same_measurement(e)]} if same_measurement(e) in rechecked else e
                   for e in load_measurements()]
        PRESETS_FILE.write_text(json.dumps(current, indent=1) + "\n")
        for page in HELP_PAGES:
            replace_section(page, "presets", presets_markdown(current))


if __name__ == "__main__":
    main()
