"""The lab pipeline end to end: the shipped digits model through ComfyUI, the metric, the demo."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skip_tuning_lab import quality_sweep
from skip_tuning_lab.comfy_server import free_port
from skip_tuning_lab.digits import load_digits_16
from skip_tuning_lab.quality import DigitsQuality, frechet_distance

REPO = Path(__file__).resolve().parents[1]


def test_frechet_distance_matches_closed_form_for_gaussians():
    """For N(0, I) against N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d."""
    generator = np.random.default_rng(0)
    a = generator.standard_normal((20000, 4))
    b = generator.standard_normal((20000, 4)) * 2.0 + 1.0
    assert math.isclose(frechet_distance(a, b), 4 + 4, rel_tol=0.05)
    assert frechet_distance(a, a) < 1e-6


def test_real_digits_score_far_better_than_noise():
    quality = DigitsQuality()
    train, _ = load_digits_16("train")
    real = quality.score(train[:500])
    noise = quality.score(torch.rand(500, 1, 16, 16) * 2 - 1)
    assert real["fd"] * 10 < noise["fd"] and real["confidence"] > 0.95


@pytest.fixture(scope="module")
def sweep(comfy_nodes_loaded):
    return quality_sweep.Sweep()


def test_quick_mode_runs_end_to_end(comfy_nodes_loaded, tmp_path, monkeypatch):
    """`quality_sweep --quick`: selection on one seed, confirmation of the pick on two others, the estimator
    floor, the same-noise grid and the report written, with finite figures throughout."""
    monkeypatch.setattr(sys, "argv", ["quality_sweep", "--quick", "--threads", "1", "--out", str(tmp_path)])
    quality_sweep.main()
    torch.set_num_threads(1)
    report = json.loads((tmp_path / "quality.json").read_text())
    assert {cell["rho_bottom"] for cell in report["selection"]} == {1.0, 0.8}
    assert not set(report["selection_seeds"]) & set(report["confirmation_seeds"]), "confirmation seeds are fresh"
    for cell in report["selection"]:
        assert all(math.isfinite(v) for v in cell["fd"] + cell["confidence"])
    (row,) = report["confirmation"]
    assert row["rho_bottom"] == 0.8 and "default" in row["role"]
    assert row["verdict"] in ("helps", "hurts", "no clear effect") and 0.0 <= row["p_better"] <= 1.0
    assert math.isclose(row["p_better"] + row["p_worse"], 1.0, rel_tol=1e-9), "the two one-sided tests"
    assert report["floor"]["fd"][0] > report["floor"]["fd_all"], "fewer samples, larger distance (the FD bias)"
    assert set(report["pixels"]) == {"real digits", "rho_bottom 1", "rho_bottom 0.9", "rho_bottom 0.8", "rho_bottom 0.7"}
    for name in ("quality_euler.png", "quality_grid.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "quality.md").read_text()
    assert "| euler | 4 | 0.8 | pick and default |" in text and "**A partial run**" in text
    assert f"quality_sweep --quick --threads 1 --out {tmp_path}`" in text, "the command as it was run"


def test_paired_verdict_matches_the_t_statistic_by_hand():
    """Gains 3, 4, 5 on an FD of ~50: t = 4 / (1 / sqrt 3); one-sided p from Student's t with 2 df."""
    from scipy.stats import t as student

    off, tuned = [50.0, 52.0, 48.0], [47.0, 48.0, 43.0]
    row = quality_sweep.paired_verdict(off, tuned)
    t_value = 4.0 / (1.0 / math.sqrt(3))
    assert math.isclose(row["p_better"], student.sf(t_value, 2), rel_tol=1e-9)
    assert row["verdict"] == "helps" and row["seeds_better"] == 3 and math.isclose(row["gain"], 4.0)
    assert quality_sweep.paired_verdict(tuned, off)["verdict"] == "hurts"
    tiny = quality_sweep.paired_verdict([50.0, 50.0, 50.0], [49.8, 49.7, 49.75])
    assert tiny["p_better"] < 0.05 and tiny["verdict"] == "no clear effect", "below the minimum effect"


def test_presets_file_holds_only_confirmed_cells_and_every_host_shows_it():
    """skip_tuning_core/presets.json: each preset passed the confirmation rule it records; the ComfyUI help
    pages carry the same text the WebUI tab builds from it."""
    from skip_tuning_core.presets import RECOMMENDED, load_measurements, presets_markdown
    from skip_tuning_lab.readme import section

    entries = load_measurements()
    for entry in entries:
        assert entry["p"] < entry["alpha"] and abs(entry["gain"]) >= entry["min_effect"] * entry["fd_off"] - 1e-3
        assert (entry["gain"] > 0) == (entry["verdict"] == RECOMMENDED)
        assert not set(entry["seeds"]) & set(quality_sweep.SELECTION_SEEDS)
        assert entry["start_percent"] == 0.0 and entry["end_percent"] == 1.0
    for page in quality_sweep.HELP_PAGES:
        assert section(page, "presets") == presets_markdown(entries)


def test_quick_mode_never_writes_readme(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["quality_sweep", "--quick", "--update-readme"])
    with pytest.raises(SystemExit) as exit_info:
        quality_sweep.main()
    assert exit_info.value.code == 2


def test_rho_one_is_identical_to_off_and_rho_below_one_differs(sweep):
    off = sweep.samples(sweep.model, "euler", 4, 0, 16)
    assert torch.equal(sweep.samples(sweep.patched(1.0), "euler", 4, 0, 16), off)
    assert not torch.equal(sweep.samples(sweep.patched(0.8), "euler", 4, 0, 16), off)


def test_demo_renders_grid_and_quality_through_the_server(tmp_path):
    out = tmp_path / "demo"
    completed = subprocess.run([sys.executable, "-m", "skip_tuning_lab.demo", "--batch", "80", "--out", str(out),
                                "--port", str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads((out / "demo_quality.json").read_text())
    assert set(report) == {"off", "on (rho_bottom 0.8)", "rho_bottom 1", "rho_bottom 0.9", "rho_bottom 0.8",
                           "rho_bottom 0.7"}
    assert all(math.isfinite(v["fd"]) for v in report.values())
    assert report["off"] == report["rho_bottom 1"], "same seed, rho 1: the same digits"
    assert report["on (rho_bottom 0.8)"] == report["rho_bottom 0.8"]
    assert report["off"] != report["on (rho_bottom 0.8)"]
    assert (out / "demo_grid.png").read_bytes()[:4] == b"\x89PNG"


def test_preset_recheck_quick_mode_reruns_presets_on_new_seeds(comfy_nodes_loaded, tmp_path, monkeypatch):
    """`preset_recheck --quick`: the first two measurements of presets.json against rho 1 on seeds that neither
    selection nor confirmation used, each row saying whether the sign held."""
    from skip_tuning_core.presets import load_measurements
    from skip_tuning_lab import preset_recheck

    assert not set(preset_recheck.RECHECK_SEEDS) & (set(quality_sweep.SELECTION_SEEDS) |
                                                    set(quality_sweep.CONFIRMATION_SEEDS))
    if not load_measurements():
        pytest.skip("presets.json holds no measurement")
    monkeypatch.setattr(sys, "argv", ["preset_recheck", "--quick", "--threads", "1", "--out", str(tmp_path)])
    preset_recheck.main()
    text = (tmp_path / "recheck.md").read_text()
    first = load_measurements()[0]
    assert f"| {first['sampler']} | {first['steps']} | {first['rho_bottom']:g} | {first['verdict']} |" in text
    assert text.count("\n| ") == 2 + 2, "the header, its rule and two rows"
    assert "seeds 2000-2001 (2," in text and "64 samples per seed" in text
