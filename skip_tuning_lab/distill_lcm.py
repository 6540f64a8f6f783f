"""Distil the digits model into a few-step student: latent consistency distillation (Luo et al., 2023).

The student starts as a copy of the teacher and learns, on the 50-step skeleton of ComfyUI's
`ModelSamplingDiscrete` node set to `lcm` (its `ModelSamplingDiscreteDistilled` + `LCM` parameterisation),
to map a noisy digit at one skeleton step to what its EMA target maps the teacher's DDIM step from there to;
the step to sigma 0 targets the teacher's own prediction. Every sigma, timestep, input scaling and
c_skip/c_out comes from the host's model_sampling objects, so sampling the student in ComfyUI with
ModelSamplingDiscrete (lcm) and the `lcm` sampler sees exactly what it was trained on. CFG 1 (the lab
samples "any digit" without guidance), so no guidance embedding is needed.

    .venv/bin/python -m skip_tuning_lab.distill_lcm --minutes 40
    .venv/bin/python -m skip_tuning_lab.distill_lcm --quick --out /tmp/student.safetensors   # CI: a few steps
"""
import copy
import json
from pathlib import Path

import torch

from .digits import HELD_OUT
from .training import draw_digits, fit, start, training_arguments, training_digits

REPO = Path(__file__).resolve().parents[1]
TEACHER = "digits16.safetensors"
HUBER_C = 0.001  # LCM's pseudo-Huber constant
CARD_STEPS = (1, 2, 4, 8)
CARD_SEED = 3000  # used by no quality run


def lcm_sampling(patcher):
    """The model_sampling ComfyUI's ModelSamplingDiscrete node installs for `lcm`, on a clone of `patcher`."""
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete

    student = ModelSamplingDiscrete().patch(patcher, "lcm", False)[0]
    return student, student.get_model_object("model_sampling")


def denoise(unet, sampling, x, sigma, context):
    """What ComfyUI's BaseModel._apply_model returns for this U-Net under `sampling` (comfy/model_base.py)."""
    output = unet(sampling.calculate_input(sigma, x), sampling.timestep(sigma).float(), context)
    return sampling.calculate_denoised(sigma, output, x)


def pseudo_huber(a, b):
    return (torch.sqrt((a - b).pow(2).flatten(1).mean(1) + HUBER_C**2) - HUBER_C).mean()


def distill(args, lab, max_steps):
    teacher_patcher, _ = lab.load_digits_model(TEACHER)
    teacher = teacher_patcher.model.diffusion_model.requires_grad_(False)
    teacher_sampling = teacher_patcher.model.model_sampling
    _, sampling = lcm_sampling(teacher_patcher)
    skeleton = sampling.sigmas.float()  # ascending: skeleton[i] is the step after skeleton[i - 1]
    student = copy.deepcopy(teacher).requires_grad_(True)
    images, labels = training_digits()
    generator = torch.Generator().manual_seed(args.seed)

    def batch_loss(student, target):
        x0, digits = draw_digits(images, labels, args.batch, args.drop_digit, lab.NULL_DIGIT, generator)
        context = lab.digit_context(digits)
        n = torch.randint(len(skeleton), (args.batch,), generator=generator)
        sigma = skeleton[n]
        sigma_prev = torch.where(n > 0, skeleton[(n - 1).clamp(min=0)], torch.zeros_like(sigma))
        x = x0 + sigma.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=generator)
        with torch.no_grad():
            predicted = denoise(teacher, teacher_sampling, x, sigma, context)
            # DDIM in sigma space: keep the predicted noise, move to the previous skeleton sigma.
            x_prev = predicted + sigma_prev.view(-1, 1, 1, 1) * (x - predicted) / sigma.view(-1, 1, 1, 1)
            last = (n == 0).view(-1, 1, 1, 1)
            aim = torch.where(last, predicted,
                              denoise(target, sampling, x_prev, torch.where(n > 0, sigma_prev, sigma), context))
        return pseudo_huber(denoise(student, sampling, x, sigma, context), aim)

    # The target network is the student's moving average, starting from the teacher (as LCM's).
    return fit(student, batch_loss, minutes=args.minutes, lr=args.lr, ema=args.ema, warmup=100, ema_warmup=False,
               max_steps=max_steps, desc="distilling", average=copy.deepcopy(teacher))


def card_scores(lab, weights, samples, steps_list):
    """FD of the student (lcm sampler, its LCM sampling) and of the teacher (euler) at each step count, one seed."""
    import comfy.sample

    from .quality import DigitsQuality

    quality = DigitsQuality()
    (any_digit,) = lab.digit_conditioning("any")
    teacher, _ = lab.load_digits_model(TEACHER)
    student, _ = lcm_sampling(lab.load_digits_file(weights)[0])
    scores = {}
    for name, model, sampler in (("student", student, "lcm"), ("teacher", teacher, "euler")):
        for steps in steps_list:
            noise = torch.randn(samples, 3, 16, 16, generator=torch.Generator().manual_seed(CARD_SEED))
            with torch.inference_mode():
                images = comfy.sample.sample(model, noise, steps, 1.0, sampler, "normal", any_digit, any_digit,
                                             torch.zeros_like(noise), seed=CARD_SEED, disable_pbar=True)
            scores[f"{name} {sampler} {steps}"] = quality.score(images.clamp(-1, 1))["fd"]
    return scores


def write_card(weights: Path, metadata: dict) -> Path:
    scores = json.loads(metadata["card_fd"])
    steps_list = sorted({int(key.split()[-1]) for key in scores})
    header = "| model | sampler | " + " | ".join(f"{s} step{'s' if s > 1 else ''}" for s in steps_list) + " |"
    rows = [header, "| --- | --- |" + " --- |" * len(steps_list)]
    for name, sampler in (("student", "lcm"), ("teacher", "euler")):
        rows.append(f"| {name} | {sampler} | " + " | ".join(f"{scores[f'{name} {sampler} {s}']:.2f}"
                                                            for s in steps_list) + " |")
    card = weights.with_suffix(".md")
    card.write_text(f"""# {weights.name}: a few-step student of the digits model

Written by `python -m skip_tuning_lab.distill_lcm` (regenerated from the weights' metadata).

- **Teacher**: `lab_models/{metadata["teacher"]}` (see MODEL_CARD.md): ComfyUI's `UNetModel`, epsilon prediction.
- **Method**: latent consistency distillation (Luo et al., 2023, "Latent Consistency Models"), in pixel space
  here: the student (same architecture, initialised from the teacher) is trained so that its prediction at one
  step of a 50-step skeleton matches its EMA target's prediction at the teacher's DDIM step to the previous
  skeleton step (the teacher's own prediction at the last step), pseudo-Huber loss (c = {HUBER_C}), target EMA
  {metadata["ema"]}, CFG 1 (random digits, "any digit" {float(metadata["drop_digit"]):.0%} of the time). Chosen over
  adversarial or distribution-matching distillation (Lightning, DMD2) because it needs no discriminator or second
  network and its inference is ComfyUI's own `lcm` sampler: what LCM and LCM-LoRA users run.
- **Use**: ComfyUI's ModelSamplingDiscrete node with `lcm` (the skeleton and the c_skip/c_out boundary
  parameterisation it was trained on), sampler `lcm`, CFG 1, 1-8 steps.
- **Training**: {metadata["steps"]} AdamW steps of batch {metadata["batch"]}, learning rate {metadata["lr"]} (cosine),
  {metadata["minutes_run"]} minutes on this 2-core CPU (one thread, beside other jobs), final loss (running mean) {metadata["final_loss"]},
  seed {metadata["seed"]}. Weights: the EMA target, float16.
- **Command**: `.venv/bin/python -m skip_tuning_lab.distill_lcm --minutes {metadata["minutes"]} --batch
  {metadata["batch"]} --seed {metadata["seed"]}` (the step count depends on the machine's speed).
- **Its own quality** (FD of classifier features to the {HELD_OUT} held-out digits, lower is better; {metadata["card_samples"]}
  samples, seed {CARD_SEED}, "any digit", CFG 1, scheduler `normal`; the teacher with `euler`):

{chr(10).join(rows)}

- **Skip Tuning on it**: README's "A few-step distilled model (LCM)" section (`skip_tuning_lab.quality_sweep --run distilled`).
- **Intended use**: measuring Skip Tuning on a distilled model without a download. A toy.
""")
    return card


def main():
    parser = training_arguments(__doc__, minutes=40.0, batch=64, lr=2e-4, ema=0.95, threads=1,
                                out=REPO / "lab_models" / "digits16_lcm.safetensors")
    parser.add_argument("--drop-digit", type=float, default=0.15, help="share trained as 'any digit'")
    args, max_steps, lab = start(parser)
    from safetensors.torch import save_file

    target, steps, loss_avg, minutes = distill(args, lab, max_steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"unet_config": json.dumps(lab.UNET_CONFIG), "teacher": TEACHER, "steps": str(steps),
                "final_loss": f"{loss_avg:.5f}", "batch": str(args.batch), "lr": f"{args.lr:g}",
                "ema": f"{args.ema:g}", "drop_digit": f"{args.drop_digit:g}", "minutes": f"{args.minutes:g}", "minutes_run": f"{minutes:.1f}",
                "seed": str(args.seed), "card_samples": str(args.samples)}
    state = {k: v.detach().half().contiguous() for k, v in target.state_dict().items()}
    save_file(state, str(args.out), metadata=metadata)
    metadata["card_fd"] = json.dumps(card_scores(lab, args.out, args.samples, CARD_STEPS))
    save_file(state, str(args.out), metadata=metadata)
    print(write_card(args.out, metadata).read_text())


if __name__ == "__main__":
    main()
