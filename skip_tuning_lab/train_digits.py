"""Train the digits diffusion model shipped in lab_models/ (reproducible: fixed seeds, CPU).

Epsilon prediction on Stable Diffusion's discrete schedule, through ComfyUI's own UNetModel and
model_sampling, so sampling in ComfyUI sees exactly the inputs the model was trained on.

    .venv/bin/python -m skip_tuning_lab.train_digits --minutes 60
"""
import json
import math
from pathlib import Path

import torch

from .comfy_host import boot_comfy, load_pack
from .digits import HELD_OUT
from .training import draw_digits, fit, init_weights, training_arguments, training_digits

REPO = Path(__file__).resolve().parents[1]
DROP_DIGIT = 0.15
MIN_SNR_GAMMA = 5.0


def write_card(weights: Path) -> Path:
    """The model card beside the weights, from the metadata the training run stored in them."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
        parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    config = json.loads(meta["unet_config"])
    command = (f".venv/bin/python -m skip_tuning_lab.train_digits --minutes {float(meta['minutes']):g} "
               f"--batch {meta['batch']} --seed {meta['seed']}")
    card = weights.with_name("MODEL_CARD.md")
    card.write_text(f"""# {weights.name}: the Skip Tuning lab's digits diffusion model

Written by `python -m skip_tuning_lab.train_digits` (this file is regenerated from the weights' metadata).

- **Data**: scikit-learn's bundled 8×8 digits (no download), bilinearly upsampled to 16×16, grey copied to
  RGB, in [-1, 1]; {HELD_OUT} digits are held out (never trained on) as the quality benchmark's reference.
- **Model**: ComfyUI's own `UNetModel`, {parameters:,} parameters, model_channels {config["model_channels"]},
  channel_mult {config["channel_mult"]}, attention (transformer_depth) {config["transformer_depth"]},
  {sum(config["num_res_blocks"]) + len(config["num_res_blocks"])} output blocks, cross-attention on a one-hot digit
  (index 10 = "any digit", the unconditional prompt, trained {DROP_DIGIT:.0%} of the time). Weights: EMA, stored in float16.
- **Objective**: epsilon prediction on Stable Diffusion's discrete schedule (scaled-linear betas 0.00085-0.012,
  1000 steps), with ComfyUI's input scaling, so every ComfyUI sampler and scheduler applies unchanged;
  Min-SNR-{MIN_SNR_GAMMA:g} loss weighting.
- **Training**: {meta["steps"]} AdamW steps of batch {meta["batch"]}, {float(meta["minutes"]):.0f} minutes on a 2-core
  CPU, final loss (running mean, weighted) {meta["final_loss"]}, seed {meta["seed"]}.
- **Command**: `{command}`
  (the step count depends on the machine's speed; `--resume` continues from a file, adding steps and minutes up).
- **Quality**: see README's "Measured on the digits model" (produced by `skip_tuning_lab.quality_sweep`).
- **Intended use**: trying Skip Tuning and its nodes without downloading a checkpoint. A toy: its numbers
  say nothing about large models.
""")
    return card


def main():
    parser = training_arguments(__doc__, minutes=60.0, batch=128, lr=1e-3, ema=0.999, threads=2,
                                out=REPO / "lab_models" / "digits16.safetensors", card=False)
    parser.add_argument("--drop-digit", type=float, default=DROP_DIGIT, help="share trained as 'any digit' (CFG)")
    parser.add_argument("--resume", type=Path, help="continue from these (EMA) weights; the metadata adds up")
    parser.add_argument("--card-only", action="store_true", help="only rewrite MODEL_CARD.md from --out")
    args = parser.parse_args()
    if args.card_only:
        print(write_card(args.out))
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    boot_comfy()
    from safetensors.torch import save_file

    lab = load_pack().nodes.lab
    model = lab.build_digits_model(device=torch.device("cpu"))
    unet = model.diffusion_model
    init_weights(unet, unet.out[-1])
    earlier = {"steps": 0, "minutes": 0.0}
    if args.resume:
        from safetensors import safe_open

        with safe_open(str(args.resume), "pt") as weights:
            unet.load_state_dict({k: weights.get_tensor(k).float() for k in weights.keys()})
            metadata = weights.metadata()
        earlier = {"steps": int(metadata["steps"]), "minutes": float(metadata["minutes"])}
    sigmas = model.model_sampling.sigmas.float()
    images, labels = training_digits()
    print(f"U-Net parameters: {sum(p.numel() for p in unet.parameters()):,}; train images: {len(images)}")
    generator = torch.Generator().manual_seed(args.seed)

    def batch_loss(unet, _):
        x0, digits = draw_digits(images, labels, args.batch, args.drop_digit, lab.NULL_DIGIT, generator)
        timesteps = torch.randint(len(sigmas), (args.batch,), generator=generator)
        sigma = sigmas[timesteps][:, None, None, None]
        noise = torch.randn(x0.shape, generator=generator)
        x_in = (x0 + sigma * noise) / torch.sqrt(sigma**2 + 1.0)  # ModelSamplingDiscrete.calculate_input
        # Min-SNR-gamma weighting (Hang et al., 2023): SNR = 1 / sigma^2; low-noise steps stop dominating the loss.
        weight = torch.clamp(MIN_SNR_GAMMA * sigma**2, max=1.0)
        error = unet(x_in, timesteps.float(), lab.digit_context(digits)) - noise
        return (weight * error**2).mean()

    ema, step, loss_avg, _ = fit(unet, batch_loss, minutes=args.minutes, lr=args.lr, ema=args.ema, warmup=200)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in ema.state_dict().items()}
    metadata = {"unet_config": json.dumps(lab.UNET_CONFIG), "steps": str(earlier["steps"] + step),
                "final_loss": f"{loss_avg:.5f}", "batch": str(args.batch),
                "minutes": str(earlier["minutes"] + args.minutes), "seed": str(args.seed)}
    save_file(state, str(args.out), metadata=metadata)
    write_card(args.out)
    print(json.dumps({"steps": earlier["steps"] + step, "final_loss": round(loss_avg, 5), "out": str(args.out)}))


if __name__ == "__main__":
    main()
