"""The measured presets every host shows, read from `presets.json`, which the lab's quality benchmark
(`skip_tuning_lab/quality_sweep.py --update-readme`) writes from its confirmation run."""
import json
from pathlib import Path

PRESETS_FILE = Path(__file__).resolve().with_name("presets.json")
# One sentence per quality run (skip_tuning_lab.quality_sweep --run NAME --update-readme): what it found.
FINDINGS_FILE = Path(__file__).resolve().with_name("findings.json")
RECOMMENDED = "recommended"
NOT_RECOMMENDED = "not recommended"

# ComfyUI's sampler names, as the file stores them, and the names the WebUIs show.
SAMPLER_LABELS = {"euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpmpp_2m": "DPM++ 2M",
                  "uni_pc": "UniPC", "ddim": "DDIM"}


def load_measurements(path: Path = PRESETS_FILE) -> list:
    """Every confirmed cell: `verdict` is RECOMMENDED (a preset) or NOT_RECOMMENDED (measured to hurt)."""
    return json.loads(path.read_text()) if path.exists() else []


def load_findings(path: Path = FINDINGS_FILE) -> dict:
    """{run name: the sentence its quality run wrote}, in the order base, long, distilled, residual (the residual
    tuning run on the lab's DiT) where present."""
    found = json.loads(path.read_text()) if path.exists() else {}
    return {name: found[name] for name in ("base", "long", "distilled", "residual") if name in found}


def sampler_label(name: str) -> str:
    return f"{SAMPLER_LABELS.get(name, name)} (`{name}`)"


MODEL_LABELS = {"eps": "digits", "lcm": "digits LCM student (`lcm` sampling)"}


def _interval(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"95% CI {low:+.2f} to {high:+.2f}"


def _evidence(entry: dict) -> str:
    return (f"FD {entry['fd_off']:.2f} → {entry['fd_tuned']:.2f}, gain {entry['gain']:+.2f} ({_interval(entry)}, "
            f"{entry['seeds_better']}/{len(entry['seeds'])} seeds better, p = {entry['p']:.3g})")


def _recheck(entry: dict) -> str:
    """What the preset recheck (skip_tuning_lab.preset_recheck) measured on seeds no other run used."""
    recheck = entry.get("recheck")
    if recheck is None:
        return "not rechecked yet"
    significance = "significant" if recheck["significant"] else "**not significant**"
    return (f"{recheck['gain']:+.2f} ({_interval(recheck)}, {recheck['seeds_better']}/{recheck['seeds']} seeds), "
            f"{recheck['gain'] / entry['gain']:.0%} of the confirmed gain, {significance}")


def presets_markdown(entries: list, findings: dict = None) -> str:
    """What the lab found, the presets and the settings measured to hurt, as the WebUI tab and the ComfyUI help
    pages show them."""
    good = [e for e in entries if e["verdict"] == RECOMMENDED]
    bad = [e for e in entries if e["verdict"] == NOT_RECOMMENDED]
    findings = load_findings() if findings is None else findings
    lines = ["**What the lab measured**:", "", *(f"- {sentence}" for sentence in findings.values()), ""] if findings else []
    if not entries:
        return "\n".join(lines + ["No measurement has been confirmed yet; compare on your own seeds."])
    if good:
        first = good[0]
        samples = " or ".join(str(n) for n in sorted({e["samples_per_seed"] for e in good}, reverse=True))
        lines += [f"Confirmed on the project's digits models ({samples} samples on each of "
                  f"{len(first['seeds'])} seeds not used to choose the value, {first['test']}, "
                  f"p < {first['alpha']:g}, gain ≥ {first['min_effect']:.0%} of the distance; whole run, "
                  "rho_top 1; two-sided 95% t intervals). A lower Fréchet distance (FD) is better. The recheck "
                  "samples each preset again on seeds no other run used.", "",
                  "| model | sampler | steps | rho_bottom | measured | recheck on new seeds |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {MODEL_LABELS.get(e.get('sampling', 'eps'), e['model'])} | {sampler_label(e['sampler'])} | "
                  f"{e['steps']} | {e['rho_bottom']:g} | {_evidence(e)} | {_recheck(e)} |" for e in good]
    else:
        lines.append("No setting's gain was confirmed on new seeds, so there are no presets.")
    if bad:
        lines += ["", "**Not recommended** (measured to make samples worse on the same seeds):", ""]
        lines += [f"- {MODEL_LABELS.get(e.get('sampling', 'eps'), e['model'])}, {sampler_label(e['sampler'])}, "
                  f"{e['steps']} steps, rho_bottom {e['rho_bottom']:g}: {_evidence(e)}; recheck: {_recheck(e)}"
                  for e in bad]
    lines += ["", "A small model's numbers say little about large ones: compare on your own seeds."]
    return "\n".join(lines)
