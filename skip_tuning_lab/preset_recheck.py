"""Does each measurement in skip_tuning_core/presets.json keep its sign on seeds no earlier run has used?

Every preset (and every setting listed as not recommended) is sampled again against rho 1 on fresh seeds,
through the same pipeline as the quality benchmark, and gets the same paired test. A recommended preset keeps
its sign when the mean gain on the new seeds is positive, a harm when it is negative.

    .venv/bin/python -m skip_tuning_lab.preset_recheck                   # lab_output/quality/recheck.md
    .venv/bin/python -m skip_tuning_lab.preset_recheck --update-readme   # and README's recheck section
    .venv/bin/python -m skip_tuning_lab.preset_recheck --quick           # two presets, small samples
"""
import shlex
import statistics
import sys
import time

import torch

from skip_tuning_core.presets import RECOMMENDED, load_measurements

from .comfy_host import boot_comfy
from .quality_sweep import REPO, Sweep, lab_arguments, paired_verdict, run_cells
from .readme import replace_section

RECHECK_SEEDS = tuple(range(2000, 2008))


def recheck(sweep, entries, seeds, count):
    """One row per measurement: its verdict, the gain it recorded, and what the new seeds say."""
    plan = {}
    for entry in entries:
        plan.setdefault((entry["sampler"], entry["steps"]), {1.0}).add(entry["rho_bottom"])
    results = run_cells(sweep, {cell: sorted(rhos, reverse=True) for cell, rhos in plan.items()}, seeds, count,
                        "recheck")
    rows = []
    for entry in entries:
        off = results[(entry["sampler"], entry["steps"], 1.0)]["fd"]
        tuned = results[(entry["sampler"], entry["steps"], entry["rho_bottom"])]["fd"]
        row = paired_verdict(off, tuned)
        recommended = entry["verdict"] == RECOMMENDED
        rows.append({**{key: entry[key] for key in ("sampler", "steps", "rho_bottom", "verdict", "gain", "gain_sd")},
                     "new": row, "fd_off": statistics.mean(off), "sign_kept": (row["gain"] > 0) == recommended})
    return rows


def markdown(rows, seeds, count, minutes, command):
    kept = sum(row["sign_kept"] for row in rows)
    invocation = f"python -m skip_tuning_lab.preset_recheck {command}".strip()
    lines = [f"Measured by `.venv/bin/{invocation}`: every measurement in `skip_tuning_core/presets.json` sampled again on seeds "
             f"{seeds[0]}-{seeds[-1]} ({len(seeds)}, used neither for selection nor for confirmation), {count} "
             f"samples per seed and setting, same pipeline and test. **{kept} of {len(rows)} kept their sign.** "
             f"The run took {minutes:.0f} minutes.", "",
             "| sampler | steps | rho_bottom | listed as | gain when confirmed | gain on the new seeds | seeds better "
             "| p (one-sided, its direction) | sign kept |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        new = row["new"]
        p = new["p_better"] if row["verdict"] == RECOMMENDED else new["p_worse"]
        lines.append(f"| {row['sampler']} | {row['steps']} | {row['rho_bottom']:g} | {row['verdict']} | "
                     f"{row['gain']:+.2f} ± {row['gain_sd']:.2f} | {new['gain']:+.2f} ± {new['gain_sd']:.2f} | "
                     f"{new['seeds_better']}/{len(seeds)} | {p:.3g} | {'yes' if row['sign_kept'] else '**no**'} |")
    return "\n".join(lines)


def main():
    parser, args = lab_arguments(__doc__, "the first two measurements, 64 samples, two seeds", "two presets")
    entries = load_measurements()
    if not entries:
        parser.error("skip_tuning_core/presets.json holds no measurement: run skip_tuning_lab.quality_sweep first")
    seeds, count = (RECHECK_SEEDS[:2], 64) if args.quick else (RECHECK_SEEDS, args.samples)
    torch.set_num_threads(args.threads)
    boot_comfy()
    started = time.monotonic()
    rows = recheck(Sweep(), entries[:2] if args.quick else entries, seeds, count)
    text = markdown(rows, seeds, count, (time.monotonic() - started) / 60, shlex.join(sys.argv[1:]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recheck.md").write_text(text)
    print(text)
    if args.update_readme:
        replace_section(REPO / "README.md", "recheck", text)


if __name__ == "__main__":
    main()
