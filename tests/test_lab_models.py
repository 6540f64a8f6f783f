"""The lab's second and third models and what is measured on them: the LCM student's distillation, the DiT's
training, the Residual Tuning node on the DiT (against a hand reference), and each run's README section as its
committed report renders it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skip_tuning_lab import quality_sweep, residual_sweep
from skip_tuning_lab.readme import section
from test_comfy_compile import fresh_dynamo  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]


def run_quick(module, out):
    completed = subprocess.run([sys.executable, "-m", f"skip_tuning_lab.{module}", "--quick", "--out", str(out)],
                               cwd=REPO, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    from safetensors import safe_open

    with safe_open(str(out), "pt") as weights:
        return {k: weights.get_tensor(k).float() for k in weights.keys()}, weights.metadata()


def test_distillation_quick_mode_trains_the_student_away_from_its_teacher(tmp_path):
    """`distill_lcm --quick`: three steps from the teacher; the stored target network moved (its EMA takes 5 % of
    the student each step), every weight finite, and the card lists the student's and the teacher's FD at
    1, 2, 4 and 8 steps."""
    student, metadata = run_quick("distill_lcm", tmp_path / "student.safetensors")
    from safetensors.torch import load_file

    teacher = load_file(str(REPO / "lab_models" / "digits16.safetensors"))
    assert metadata["steps"] == "3" and metadata["teacher"] == "digits16.safetensors"
    assert set(student) == set(teacher) and all(torch.isfinite(v).all() for v in student.values())
    moved = sum(not torch.equal(student[k], teacher[k].float()) for k in student)
    assert moved > len(student) // 2, f"only {moved} of {len(student)} tensors moved"
    card = (tmp_path / "student.md").read_text()
    assert "| student | lcm | " in card and "| teacher | euler | " in card and "8 steps" in card


def test_dit_training_quick_mode_writes_a_flux_model_comfyui_loads(tmp_path):
    """`train_dit --quick`: a Flux-class checkpoint whose QK-norm scales were initialised (ComfyUI leaves them
    torch.empty: NaN samples), finite, with its card."""
    weights, metadata = run_quick("train_dit", tmp_path / "dit.safetensors")
    assert json.loads(metadata["unet_config"])["image_model"] == "flux" and metadata["steps"] == "3"
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert all(torch.allclose(v, torch.ones_like(v), atol=0.05) for k, v in weights.items() if k.endswith("norm.scale"))
    assert "double-stream" in (tmp_path / "dit.md").read_text()


@pytest.fixture(scope="module")
def tiny_dit(comfy_nodes_loaded):
    """The lab DiT's architecture with random weights (its output layer not zeroed), in a ModelPatcher."""
    import comfy.model_patcher

    from skip_tuning_lab.comfy_host import load_pack
    from skip_tuning_lab.training import init_weights

    lab = load_pack().nodes.lab
    torch.manual_seed(0)
    model = lab.build_digits_model(lab.DIT_CONFIG, device=torch.device("cpu"))
    dit = model.diffusion_model
    init_weights(dit)  # the output layer left random: a zeroed one would hide any patch
    model.eval()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    return patcher, lab


def sample(patcher, lab, steps=3):
    import comfy.sample

    (any_digit,) = lab.digit_conditioning("any")
    noise = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        return comfy.sample.sample(patcher, noise, steps, 1.0, "euler", "simple", any_digit, any_digit,
                                   torch.zeros_like(noise), seed=7, disable_pbar=True)


def reference_hooks(dit, rhos):
    """Residual tuning written independently: torch hooks on each block keep a copy of its inputs and return
    out - (1 - rho) * input for each stream."""
    blocks = list(dit.double_blocks) + list(dit.single_blocks)
    handles = []
    for block, rho in zip(blocks, rhos):
        saved = {}

        def before(module, args, kwargs, saved=saved):
            # Flux calls double blocks with img= and txt=, single blocks with the joint sequence first.
            saved["img"] = (kwargs["img"] if "img" in kwargs else args[0]).clone()
            saved["txt"] = kwargs["txt"].clone() if "txt" in kwargs else None

        def after(module, args, kwargs, output, saved=saved, rho=rho):
            if saved["txt"] is None:
                return output - (1 - rho) * saved["img"]
            return output[0] - (1 - rho) * saved["img"], output[1] - (1 - rho) * saved["txt"]

        handles.append(block.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(block.register_forward_hook(after, with_kwargs=True))
    return handles


def node(comfy_nodes_loaded, patcher, rho_first, rho_last, blocks="all", start=0.0, end=1.0):
    """The Residual Tuning node as ComfyUI's registry holds it."""
    return comfy_nodes_loaded["ResidualTuningDiT"]().apply(patcher, rho_first, rho_last, blocks, start, end)[0]


def ramp(first, last, count):
    return [first + (last - first) * i / (count - 1) for i in range(count)]


def test_residual_tuning_node_equals_hooks_written_by_hand_and_rho_one_is_untouched(tiny_dit, comfy_nodes_loaded):
    """Sampling through ComfyUI with the node's clone equals the same sampling with independent torch hooks (a
    first-to-last ramp 0.9 → 1.02 over the 5 blocks); rho 1 everywhere is bit-identical to the model itself;
    the shared model keeps no patch afterwards."""
    patcher, lab = tiny_dit
    dit = patcher.model.diffusion_model
    untouched = sample(patcher, lab)
    tuned = sample(node(comfy_nodes_loaded, patcher, 0.9, 1.02), lab)
    handles = reference_hooks(dit, ramp(0.9, 1.02, len(dit.double_blocks) + len(dit.single_blocks)))
    try:
        reference = sample(patcher, lab)
    finally:
        for handle in handles:
            handle.remove()
    assert (tuned - untouched).abs().max() > 1e-3, "the patch changes the samples"
    torch.testing.assert_close(tuned, reference, rtol=0, atol=1e-5)
    assert torch.equal(sample(node(comfy_nodes_loaded, patcher, 1.0, 1.0), lab), untouched)
    assert "patches_replace" not in patcher.model_options.get("transformer_options", {})
    assert torch.equal(sample(patcher, lab), untouched)


def test_residual_tuning_range_scales_exactly_the_steps_inside_it(tiny_dit, comfy_nodes_loaded):
    """start/end percent: the blocks are scaled at the steps whose sigma the model's percent_to_sigma puts in
    0.3-0.7 and at no other (counted at the first double block's replacement: scaled calls return rho * x_in
    + branch, the others the block's own output)."""
    import comfy.samplers

    patcher, lab = tiny_dit
    tuned = node(comfy_nodes_loaded, patcher, 0.5, 0.5, "double", 0.3, 0.7)
    replace = tuned.model_options["transformer_options"]["patches_replace"]["dit"][("double_block", 0)]
    seen = []

    def spy(args, extra):
        # The block adds in place: each call gets its own copies of the inputs.
        img, txt = args["img"].clone(), args["txt"].clone()
        out = replace({**args, "img": img.clone(), "txt": txt.clone()}, extra)
        plain = extra["original_block"]({**args, "img": img.clone(), "txt": txt.clone()})
        seen.append((float(args["transformer_options"]["sigmas"].max()), not torch.equal(out["img"], plain["img"])))
        return out

    tuned.set_model_patch_replace(spy, "dit", "double_block", 0)
    sample(tuned, lab, steps=6)
    sampling = patcher.get_model_object("model_sampling")
    high, low = float(sampling.percent_to_sigma(0.3)), float(sampling.percent_to_sigma(0.7))
    sigmas = comfy.samplers.calculate_sigmas(sampling, "simple", 6)[:-1].tolist()
    inside = [low * (1 - 1e-4) <= sigma <= high * (1 + 1e-4) for sigma in sigmas]
    assert any(inside) and not all(inside)
    assert [changed for _, changed in seen] == inside
    assert torch.allclose(torch.tensor([sigma for sigma, _ in seen]), torch.tensor(sigmas))


def test_residual_tuning_refuses_bad_input_and_models_without_flux_blocks(tiny_dit, comfy_nodes_loaded):
    """Each bad value is refused naming its field and range; a U-Net is refused naming its class and pointing to
    Skip Tuning."""
    from skip_tuning_lab.comfy_host import load_pack

    patcher, lab = tiny_dit
    for args, field in (((3.5, 1.0), "rho_first"), ((1.0, -0.1), "rho_last"), ((1.0, 1.0, "middle"), "blocks"),
                        ((1.0, 1.0, "all", 1.2), "start_percent")):
        with pytest.raises(ValueError, match=field):  # SkipTuningError, as the pack's own module defines it
            node(comfy_nodes_loaded, patcher, *args)
    unet, _ = load_pack().nodes.lab.load_digits_model("digits16.safetensors")
    with pytest.raises(ValueError, match="UNetModel.*Skip Tuning"):
        node(comfy_nodes_loaded, unet, 0.95, 0.95)


def test_residual_tuning_on_double_or_single_blocks_only(tiny_dit, comfy_nodes_loaded):
    """`blocks="double"` patches exactly the double-stream blocks, `"single"` the single-stream ones."""
    patcher, _ = tiny_dit
    for blocks, kind in (("double", "double_block"), ("single", "single_block")):
        tuned = node(comfy_nodes_loaded, patcher, 0.95, 0.95, blocks)
        keys = set(tuned.model_options["transformer_options"]["patches_replace"]["dit"])
        count = len(getattr(patcher.model.diffusion_model, f"{blocks}_blocks"))
        assert keys == {(kind, i) for i in range(count)}


def test_the_lab_measured_the_nodes_recipe():
    """residual_sweep samples through the same function the node calls (what README reports is what ships)."""
    from skip_tuning_core import residual

    assert residual_sweep.residual_tuned is residual.residual_tuned


@pytest.mark.parametrize("run", sorted(quality_sweep.RUNS))
def test_readme_sections_are_what_the_committed_reports_render(run):
    """README's quality sections come from the reports committed in docs/ (`quality_sweep --render`)."""
    spec = quality_sweep.RUNS[run]
    report = quality_sweep.report_file(spec)
    if not report.exists():
        pytest.skip(f"{report.name} not committed: run `quality_sweep --run {run} --update-readme`")
    assert section(REPO / "README.md", spec.section) == quality_sweep.markdown(json.loads(report.read_text()), spec)


def test_distilled_protocol_quick_mode_samples_the_student_as_lcm_users_do(comfy_nodes_loaded, tmp_path, monkeypatch):
    """`quality_sweep --run distilled --quick`: the student through ModelSamplingDiscrete (lcm) and the `lcm`
    sampler, one cell, selection and confirmation on fresh seeds, finite figures; rho 1 and 0.8 differ."""
    monkeypatch.setattr(sys, "argv", ["quality_sweep", "--run", "distilled", "--quick", "--threads", "1", "--out",
                                      str(tmp_path)])
    quality_sweep.main()
    torch.set_num_threads(1)
    report = json.loads((tmp_path / "quality_distilled.json").read_text())
    assert {(c["sampler"], c["steps"]) for c in report["selection"]} == {("lcm", 1)}
    fds = {c["rho_bottom"]: c["fd"][0] for c in report["selection"]}
    assert set(fds) == {1.0, 0.8} and fds[1.0] != fds[0.8] and all(v == v for v in fds.values())
    assert "**A partial run**" in (tmp_path / "quality_distilled.md").read_text()


def test_residual_protocol_quick_mode_runs_end_to_end(comfy_nodes_loaded, tmp_path, monkeypatch):
    """`residual_sweep --quick`: the lab DiT, off and one setting, selection then confirmation, its report."""
    monkeypatch.setattr(sys, "argv", ["residual_sweep", "--quick", "--threads", "1", "--out", str(tmp_path)])
    residual_sweep.main()
    torch.set_num_threads(1)
    report = json.loads((tmp_path / "residual.json").read_text())
    assert {c["setting"] for c in report["selection"]} == {"off", "all 0.95"}
    assert not set(report["selection_seeds"]) & set(report["confirmation_seeds"])
    assert "**A partial run.**" in (tmp_path / "residual.md").read_text()


def test_residual_recheck_quick_mode_samples_a_committed_pick_on_new_seeds(comfy_nodes_loaded, tmp_path,
                                                                           monkeypatch):
    """`residual_sweep --recheck --quick`: the first confirmed pick of the committed run, against off, on seeds
    that neither selection nor confirmation used; the gain on them is measured, not copied."""
    from skip_tuning_lab.preset_recheck import RECHECK_SEEDS

    monkeypatch.setattr(sys, "argv", ["residual_sweep", "--recheck", "--quick", "--threads", "1", "--out",
                                      str(tmp_path)])
    residual_sweep.main()
    torch.set_num_threads(1)
    committed = json.loads((residual_sweep.REPO / "docs" / "quality_residual.json").read_text())
    first = next(r for r in committed["confirmation"] if r["verdict"] == "helps")
    text = (tmp_path / "residual_recheck.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| {first['sampler']} | {first['steps']} |"))
    confirmed, new = row.split(" | ")[3:5]
    assert confirmed == f"{first['gain']:+.2f}" and new.split()[0] != confirmed
    assert f"seeds {RECHECK_SEEDS[0]}-{RECHECK_SEEDS[1]}" in text
    assert not set(RECHECK_SEEDS) & set(committed["selection_seeds"] + committed["confirmation_seeds"])


def test_residual_tuning_keeps_a_block_replacement_set_before_and_two_nodes_add_their_changes(tiny_dit,
                                                                                               comfy_nodes_loaded):
    """A replacement another node set for a block still runs under the node's (bug: it was overwritten), and
    two Residual Tuning nodes at 0.9 give what one at 0.8 gives (each adds -0.1 x_in), as the diffusers hooks
    do."""
    patcher, lab = tiny_dit
    dit = patcher.model.diffusion_model
    count = len(dit.double_blocks) + len(dit.single_blocks)
    handles = reference_hooks(dit, [0.8] * count)
    try:
        reference = sample(patcher, lab)
    finally:
        for handle in handles:
            handle.remove()
    calls = []
    other = patcher.clone()
    other.set_model_patch_replace(lambda args, extra: calls.append(1) or extra["original_block"](args), "dit",
                                  "double_block", 0)
    twice = node(comfy_nodes_loaded, node(comfy_nodes_loaded, other, 0.9, 0.9), 0.9, 0.9)
    torch.testing.assert_close(sample(twice, lab), reference, rtol=0, atol=1e-5)
    assert calls, "the other node's replacement ran"


def test_the_forge_module_hooks_tune_comfyuis_in_place_flux_as_the_node_does(tiny_dit, comfy_nodes_loaded):
    """Forge Neo's Flux is a port of ComfyUI's: its blocks are called the same way and add their branches in
    place (`img +=`, read with the search tools in its backend/nn/flux.py). The WebUI's Forge glue (module hooks,
    sd_webui_ext/forge.py) on ComfyUI's real Flux gives what the node gives, a range included, and leaves no
    hook (bug it guards: without a copy of the inputs the in-place blocks left nothing to scale)."""
    from harness import hooks_left
    from sd_webui_ext.forge import attach_residual
    from sd_webui_ext.params import ResidualParams

    patcher, lab = tiny_dit
    untouched = sample(patcher, lab, steps=6)
    expected = sample(node(comfy_nodes_loaded, patcher, 0.8, 1.0, "all", 0.2, 0.8), lab, steps=6)
    with attach_residual(patcher, ResidualParams(True, 0.8, 1.0, "all", 0.2, 0.8)):
        hooked = sample(patcher, lab, steps=6)
    assert (expected - untouched).abs().max() > 1e-3
    torch.testing.assert_close(hooked, expected, rtol=0, atol=1e-5)
    assert hooks_left(patcher.model.diffusion_model) == 0 and torch.equal(sample(patcher, lab, steps=6), untouched)


def test_residual_tuning_under_torch_compile_keeps_the_graph_count_and_is_exact(tiny_dit, comfy_nodes_loaded,
                                                                                 fresh_dynamo):
    """ComfyUI's own compile wrapper (what TorchCompileModel installs), a counting backend: the tuned DiT, whole
    run or a range, compiles as many graphs as the untuned one and breaks none, and samples what eager sampling
    does (bug: each block read the step's sigma as a Python number, 17 graphs and a break per call)."""
    from test_comfy_compile import CountingBackend, assert_no_breaks, compiled

    patcher, lab = tiny_dit
    plain_backend = CountingBackend()
    sample(compiled(patcher, plain_backend)[0], lab, steps=4)
    for settings in (("all", 0.0, 1.0), ("all", 0.3, 0.7)):
        torch._dynamo.reset()
        model = node(comfy_nodes_loaded, patcher, 0.9, 0.95, *settings)
        backend = CountingBackend()
        fast, calls = compiled(model, backend)
        torch.testing.assert_close(sample(fast, lab, steps=4), sample(model, lab, steps=4), rtol=0, atol=1e-6)
        assert backend.compiled == plain_backend.compiled and backend.runs == len(calls) == 4
    assert_no_breaks()
