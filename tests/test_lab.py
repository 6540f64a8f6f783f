"""The lab pipeline end to end: the shipped digits model through ComfyUI, the metric, the demo."""
import contextlib
import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
    report = json.loads((tmp_path / "quality_base.json").read_text())
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
    text = (tmp_path / "quality_base.md").read_text()
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
        n = len(entry["seeds"])
        # The 95% t interval of its gain (recomputed here from the rounded mean and sd it stores).
        assert entry["ci95"] == pytest.approx(quality_sweep.interval({**entry, "seeds": n}), abs=2e-3)
        recheck = entry.get("recheck")
        if recheck:  # significance as the recheck's one-sided test in the preset's direction says
            assert recheck["significant"] == (recheck["p"] < entry["alpha"] and
                                              (recheck["gain"] > 0) == (entry["verdict"] == RECOMMENDED))
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


def as_in_a_terminal():
    """The demo as a terminal starts it: a suite run in the background (`cmd &` in a script) hands its children
    SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt; a terminal never does that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def demo(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "skip_tuning_lab.demo", "--out", str(out), "--port",
                             str(free_port()), *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=as_in_a_terminal)


def server_pid(line: str) -> int:
    return int(re.search(r"\(pid (\d+),", line).group(1))


def assert_gone(pid: int, port: int):
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_demo_grid_says_what_it_shows_each_setting_once_in_the_figures_order(tmp_path):
    out = tmp_path / "demo"
    process = demo(out, "--batch", "80")
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    report = json.loads((out / "demo_quality.json").read_text())
    # README's figure (docs/quality_grid.png) goes from rho_bottom 1 down to 0.7; the A/B's off and on are the
    # sweep's 1 and 0.8, pixel for pixel, so they name those rows instead of repeating them.
    assert list(report) == ["rho_bottom 1 = off", "rho_bottom 0.9", "rho_bottom 0.8 = on", "rho_bottom 0.7"]
    assert all(math.isfinite(v["fd"]) for v in report.values())
    assert len({v["fd"] for v in report.values()}) == 4
    grid = Image.open(out / "demo_grid.png")
    ksampler = [node["widgets_values"] for node in json.loads(
        (REPO / "example_workflows" / "lab_digits_sweep.json").read_text())["nodes"] if node["type"] == "KSampler"]
    seed, _, steps, _, sampler, _, _ = ksampler[0]
    text = grid.text["Title"] + "\n" + grid.text["Description"]
    assert f"{sampler}, {steps} steps" in text and f"seed {seed}" in text and "rho_top 1" in text
    for name, scores in report.items():
        assert f"{name}\nFD {scores['fd']:.2f}" in text
    pixels = np.asarray(grid.convert("L"))
    assert (pixels[:25] < 128).sum() > 500, "a title above the grid"
    assert blank_border(pixels) <= 16
    port = int(re.search(r"127\.0\.0\.1:(\d+)", output).group(1))
    assert_gone(server_pid(output), port)


@pytest.mark.parametrize("number, when", [(signal.SIGTERM, "serving at"), (signal.SIGINT, "queueing")],
                         ids=["sigterm-while-serving", "ctrl-c-while-rendering"])
def test_demo_stops_the_server_it_started_on_sigterm_and_ctrl_c(tmp_path, number, when):
    process = demo(tmp_path / "demo", "--batch", "8", "--serve")
    pid = None
    try:
        lines = []
        while not lines or when not in lines[-1]:
            lines.append(process.stdout.readline())
            assert lines[-1], "".join(lines)[-3000:]
        started = "".join(lines)
        pid, port = server_pid(started), int(re.search(r"127\.0\.0\.1:(\d+)", started).group(1))
        os.kill(pid, 0)
        process.send_signal(number)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0 and "stopping the ComfyUI server" in rest, rest[-3000:]
        assert_gone(pid, port)
    finally:  # a failed run leaves no process behind
        process.kill()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def blank_border(pixels: np.ndarray) -> int:
    """The widest white band along any edge of a greyscale picture (JPEG noise aside)."""
    rows, columns = np.nonzero(pixels < 200)
    height, width = pixels.shape
    return max(rows.min(), columns.min(), height - 1 - rows.max(), width - 1 - columns.max())


def object_info(mappings, workflow: dict) -> dict:
    """/object_info's entries for the workflow's nodes, from the node classes, without a server."""
    info = {}
    for node_type in {node["type"] for node in workflow["nodes"] if node["type"] in mappings}:
        inputs = mappings[node_type].INPUT_TYPES()
        info[node_type] = {"input": inputs, "input_order": {kind: list(names) for kind, names in inputs.items()}}
    return info


def test_each_sd_workflow_card_shows_its_own_settings_and_ends_at_its_content(comfy_nodes_loaded):
    """The committed cards are what thumbnails draws from each workflow: a column per setting its KSamplers
    sample (the A/B: without and with; the sweep: each value), pairwise different, no blank band."""
    from skip_tuning_lab import thumbnails
    from skip_tuning_lab.demo import api_prompt, load_workflow

    cards, shown = {}, {}
    for name in ("skip_tuning_sd15_txt2img", "skip_tuning_sdxl_txt2img", "skip_tuning_ab_comparison",
                 "skip_tuning_rho_sweep"):
        workflow = load_workflow(name)
        prompt = api_prompt(workflow, object_info(comfy_nodes_loaded, workflow))
        shown[name] = thumbnails.columns(prompt, 12)
        cards[name] = np.asarray(thumbnails.settings_card(workflow, prompt).convert("L"), dtype=np.int16)
        committed = np.asarray(Image.open(REPO / "example_workflows" / f"{name}.jpg").convert("L"), dtype=np.int16)
        assert committed.shape == cards[name].shape and np.abs(committed - cards[name]).mean() < 3, \
            f"{name}.jpg is out of date: run python -m skip_tuning_lab.thumbnails"
    assert [title for title, _ in shown["skip_tuning_ab_comparison"]] == ["without Skip Tuning", "rho_bottom 0.8"]
    off, on = (skip_range for _, skip_range in shown["skip_tuning_ab_comparison"])
    assert off is None and on.rhos[0] == 0.8 and on.rhos[-1] == 1.0
    assert [skip_range.rhos[0] for _, skip_range in shown["skip_tuning_rho_sweep"]] == [1.0, 0.9, 0.8, 0.7]
    for a, b in itertools.combinations(cards, 2):
        assert cards[a].shape != cards[b].shape or np.abs(cards[a] - cards[b]).mean() > 2, (a, b)
    for path in sorted((REPO / "example_workflows").glob("*.jpg")):
        assert blank_border(np.asarray(Image.open(path).convert("L"))) <= 16, path.name


def test_thumbnails_help_prints_usage_and_writes_nothing():
    cards = sorted((REPO / "example_workflows").glob("*.jpg"))
    before = [(path.read_bytes(), path.stat().st_mtime_ns) for path in cards]
    completed = subprocess.run([sys.executable, "-m", "skip_tuning_lab.thumbnails", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0 and completed.stdout.startswith("usage:"), completed.stderr[-3000:]
    assert "example_workflows" in completed.stdout
    assert [(path.read_bytes(), path.stat().st_mtime_ns) for path in cards] == before


def test_demo_rows_join_outputs_with_identical_images():
    from skip_tuning_lab.demo import label, merge_identical

    zeros, ones = [np.zeros((2, 2, 3), np.uint8)], [np.ones((2, 2, 3), np.uint8)]
    rows = merge_identical({"rho_bottom 1": zeros, "rho_bottom 0.8": ones, "off": [zeros[0].copy()]})
    assert [names for names, _ in rows] == [["rho_bottom 1", "off"], ["rho_bottom 0.8"]]
    assert rows[0][1] is zeros and rows[1][1] is ones
    assert [label(p) for p in ("digits_skip_tuning_off", "rho_bottom_0.9", "rho_top_1")] == [
        "off", "rho_bottom 0.9", "rho_top 1"]


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
    assert (f"| {first['model'].split('/')[-1]} | {first['sampler']} | {first['steps']} | {first['rho_bottom']:g} | "
            f"{first['verdict']} |") in text
    assert text.count("\n| ") == 2 + 2, "the header, its rule and two rows"
    assert "seeds 2000-2001 (2," in text and "64 samples per seed" in text
