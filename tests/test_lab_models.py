"""The lab's second and third models and what is measured on them: the LCM student's distillation, the DiT's
training, residual tuning on the DiT (against a hand reference), and each run's README section as its
committed report renders it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skip_tuning_lab import quality_sweep, residual_sweep
from skip_tuning_lab.readme import section

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


def test_residual_tuning_equals_hooks_written_by_hand_and_rho_one_is_untouched(tiny_dit):
    """Sampling through ComfyUI with the residual-tuned clone equals the same sampling with independent torch
    hooks (a first-to-last ramp 0.9 → 1.02 over the 6 blocks); rho 1 everywhere is bit-identical to the model
    itself; the shared model keeps no patch afterwards."""
    patcher, lab = tiny_dit
    dit = patcher.model.diffusion_model
    untouched = sample(patcher, lab)
    tuned = sample(residual_sweep.residual_tuned(patcher, 0.9, 1.02), lab)
    blocks = len(dit.double_blocks) + len(dit.single_blocks)
    rhos = [0.9 + (1.02 - 0.9) * i / (blocks - 1) for i in range(blocks)]
    handles = reference_hooks(dit, rhos)
    try:
        reference = sample(patcher, lab)
    finally:
        for handle in handles:
            handle.remove()
    assert (tuned - untouched).abs().max() > 1e-3, "the patch changes the samples"
    torch.testing.assert_close(tuned, reference, rtol=0, atol=1e-5)
    assert torch.equal(sample(residual_sweep.residual_tuned(patcher, 1.0, 1.0), lab), untouched)
    assert "patches_replace" not in patcher.model_options.get("transformer_options", {})
    assert torch.equal(sample(patcher, lab), untouched)


def test_residual_tuning_on_double_or_single_blocks_only(tiny_dit):
    """`blocks="double"` patches exactly the double-stream blocks, `"single"` the single-stream ones."""
    patcher, _ = tiny_dit
    for blocks, kind in (("double", "double_block"), ("single", "single_block")):
        tuned = residual_sweep.residual_tuned(patcher, 0.95, 0.95, blocks)
        keys = set(tuned.model_options["transformer_options"]["patches_replace"]["dit"])
        count = len(getattr(patcher.model.diffusion_model, f"{blocks}_blocks"))
        assert keys == {(kind, i) for i in range(count)}


@pytest.mark.parametrize("run", sorted(quality_sweep.RUNS))
def test_readme_sections_are_what_the_committed_reports_render(run):
    """README's quality sections come from the reports committed in docs/ (`quality_sweep --render`)."""
    spec = quality_sweep.RUNS[run]
    report = quality_sweep.report_file(spec)
    if not report.exists():
        pytest.skip(f"{report.name} not committed: run `quality_sweep --run {run} --update-readme`")
    assert section(REPO / "README.md", spec.section) == quality_sweep.markdown(json.loads(report.read_text()), spec)
