"""Train the lab's DiT: ComfyUI's own Flux transformer on the digits, in pixel space (lab_models/).

Rectified flow as Flux is trained (x_t = sigma * noise + (1 - sigma) * x0, the model predicts noise - x0,
sigma drawn logit-normal as in SD3), through ComfyUI's Flux BaseModel and its ModelSamplingFlux, so every
ComfyUI sampler applies unchanged. Flux's blocks add their branches in place, which autograd refuses; inside
`allow_mutation_on_saved_tensors` the unmodified classes train.

    .venv/bin/python -m skip_tuning_lab.train_dit --minutes 60
    .venv/bin/python -m skip_tuning_lab.train_dit --quick --out /tmp/dit.safetensors   # CI: a few steps
"""
import json
import math
from pathlib import Path

import torch

from .digits import HELD_OUT
from .training import draw_digits, fit, init_weights, start, training_arguments, training_digits

REPO = Path(__file__).resolve().parents[1]
DROP_DIGIT = 0.15
CARD_STEPS = (4, 6, 10, 20)
CARD_SEED = 3000  # used by no quality run


def card_scores(lab, weights, samples, steps_list):
    """FD of the DiT with euler at each step count, one seed, "any digit", CFG 1."""
    import comfy.sample

    from .quality import DigitsQuality

    quality = DigitsQuality()
    (any_digit,) = lab.digit_conditioning("any")
    model, _ = lab.load_digits_file(weights)
    scores = {}
    for steps in steps_list:
        noise = torch.randn(samples, 3, 16, 16, generator=torch.Generator().manual_seed(CARD_SEED))
        with torch.inference_mode():
            images = comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", any_digit, any_digit,
                                         torch.zeros_like(noise), seed=CARD_SEED, disable_pbar=True)
        scores[str(steps)] = quality.score(images.clamp(-1, 1))["fd"]
    return scores


def write_card(weights: Path) -> Path:
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
        parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    config, scores = json.loads(meta["unet_config"]), json.loads(meta["card_fd"])
    card = weights.with_suffix(".md")
    card.write_text(f"""# {weights.name}: the Skip Tuning lab's digits DiT

Written by `python -m skip_tuning_lab.train_dit` (regenerated from the weights' metadata).

- **Data**: the digits model's (see MODEL_CARD.md): scikit-learn's 8×8 digits at 16×16, RGB, {HELD_OUT} held out.
- **Model**: ComfyUI's own `comfy.ldm.flux.model.Flux` (model_base `Flux`, ModelSamplingFlux with shift
  {meta["shift"]}), {parameters:,} parameters: 2×2 pixel patches (64 image tokens), hidden size
  {config["hidden_size"]}, {config["num_heads"]} heads, {config["depth"]} double-stream and {config["depth_single_blocks"]}
  single-stream blocks, the digit as a one-token text stream (index 10 = "any digit", trained
  {float(meta["drop_digit"]):.0%} of the time), no pooled vector, no guidance embedding. Weights: EMA, float16.
- **Objective**: rectified flow (the model predicts noise − x0 at x_t = sigma·noise + (1 − sigma)·x0), sigma
  logit-normal(0, 1).
- **Training**: {meta["steps"]} AdamW steps of batch {meta["batch"]}, learning rate {meta["lr"]} (cosine),
  {meta["minutes_run"]} minutes on this 2-core CPU (one thread, beside other jobs), final loss (running mean)
  {meta["final_loss"]}, seed {meta["seed"]}.
- **Command**: `.venv/bin/python -m skip_tuning_lab.train_dit --minutes {meta["minutes"]} --batch {meta["batch"]}
  --seed {meta["seed"]}` (the step count depends on the machine's speed).
- **Its own quality** (FD of classifier features to the held-out digits, lower is better; {meta["card_samples"]}
  samples, seed {CARD_SEED}, euler, scheduler `simple`, "any digit", CFG 1):
  {"; ".join(f"{steps} steps {fd:.2f}" for steps, fd in scores.items())}.
- **Residual tuning on it**: README's "Residual tuning on a DiT" section (`skip_tuning_lab.residual_sweep`).
- **Intended use**: measuring training-free changes to a transformer's sampling without a download. A toy.
""")
    return card


def main():
    parser = training_arguments(__doc__, minutes=60.0, batch=64, lr=1e-3, ema=0.999, threads=1,
                                out=REPO / "lab_models" / "digits16_dit.safetensors")
    args, max_steps, lab = start(parser)
    from safetensors.torch import save_file

    model = lab.build_digits_model(lab.DIT_CONFIG, device=torch.device("cpu"))
    dit = model.diffusion_model
    init_weights(dit, dit.final_layer.linear)
    images, labels = training_digits()
    print(f"DiT parameters: {sum(p.numel() for p in dit.parameters()):,}; train images: {len(images)}")
    generator = torch.Generator().manual_seed(args.seed)

    def batch_loss(dit, _):
        x0, digits = draw_digits(images, labels, args.batch, DROP_DIGIT, lab.NULL_DIGIT, generator)
        sigma = torch.sigmoid(torch.randn(args.batch, generator=generator))
        noise = torch.randn(x0.shape, generator=generator)
        x_t = model.model_sampling.noise_scaling(sigma, noise, x0)
        velocity = dit(x_t, model.model_sampling.timestep(sigma), lab.digit_context(digits))
        return ((velocity - (noise - x0)) ** 2).mean()

    ema, steps, loss_avg, minutes = fit(dit, batch_loss, minutes=args.minutes, lr=args.lr, ema=args.ema,
                                        warmup=200, max_steps=max_steps,
                                        around_step=torch.autograd.graph.allow_mutation_on_saved_tensors)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"unet_config": json.dumps(lab.DIT_CONFIG), "shift": f"{model.model_sampling.shift:g}",
                "steps": str(steps), "final_loss": f"{loss_avg:.5f}", "batch": str(args.batch), "lr": f"{args.lr:g}",
                "drop_digit": f"{DROP_DIGIT:g}", "minutes": f"{args.minutes:g}", "minutes_run": f"{minutes:.1f}",
                "seed": str(args.seed), "card_samples": str(args.samples)}
    state = {k: v.detach().half().contiguous() for k, v in ema.state_dict().items()}
    save_file(state, str(args.out), metadata=metadata)
    metadata["card_fd"] = json.dumps(card_scores(lab, args.out, args.samples, CARD_STEPS))
    save_file(state, str(args.out), metadata=metadata)
    print(write_card(args.out).read_text())


if __name__ == "__main__":
    main()
