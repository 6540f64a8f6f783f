"""What the lab's training commands share: their options, torch's initialisation where comfy.ops skips it, and
the loop."""
import argparse
import contextlib
import copy
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm


def training_arguments(description, *, minutes, batch, lr, ema, threads, out, card=True):
    """The options every training command has; `card` adds the card's sample count and --quick (a few steps of a
    small batch and a small card: checks the pipeline)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=minutes, help="training time budget")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--ema", type=float, default=ema, help="decay of the weights' moving average")
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=out)
    if card:
        parser.add_argument("--samples", type=int, default=334, help="samples per step count for the card's FD")
        parser.add_argument("--quick", action="store_true", help="3 steps of batch 8, a card from 32 samples: "
                                                                 "checks the pipeline (use with --out outside "
                                                                 "lab_models/)")
    return parser


def start(parser):
    """Parse the options, pin threads and seed, boot ComfyUI: (options, step limit of --quick, the lab nodes)."""
    from .comfy_host import boot_comfy, load_pack

    args = parser.parse_args()
    max_steps = quick_settings(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    boot_comfy()
    return args, max_steps, load_pack().nodes.lab


def training_digits():
    """The training split as the models see it: RGB (grey copied), in [-1, 1]; (images, labels)."""
    from .digits import load_digits_16

    images, labels = load_digits_16("train")
    return images.expand(-1, 3, -1, -1).contiguous(), labels


def draw_digits(images, labels, batch, drop, null_digit, generator):
    """A batch of training digits and their tokens, each token replaced by `null_digit` ("any digit") with
    probability `drop` (what CFG's unconditional prompt learns from): (images, tokens)."""
    index = torch.randint(len(images), (batch,), generator=generator)
    digits = labels[index].clone()
    digits[torch.rand(batch, generator=generator) < drop] = null_digit
    return images[index], digits


def quick_settings(args):
    """--quick: 3 steps of batch 8 and a 32-sample card; the step limit (None: the time budget alone)."""
    if not args.quick:
        return None
    args.batch, args.samples = 8, 32
    return 3


def init_weights(module: torch.nn.Module, output: torch.nn.Module = None) -> None:
    """comfy.ops skips torch's initialisation; run it, and zero the output layer if given (a common diffusion
    init)."""
    for child in module.modules():
        for base in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm):
            if isinstance(child, base):
                base.reset_parameters(child)
        if type(child).__name__ == "RMSNorm" and isinstance(getattr(child, "scale", None), torch.nn.Parameter):
            torch.nn.init.ones_(child.scale)  # Flux's QK norms: a bare torch.empty otherwise
    if output is not None:
        torch.nn.init.zeros_(output.weight)
        torch.nn.init.zeros_(output.bias)


def fit(model, batch_loss, *, minutes, lr, ema, warmup, ema_warmup=True, max_steps=None, desc="training",
        average=None, around_step=contextlib.nullcontext):
    """AdamW on `batch_loss(model, average)` for `minutes` (or `max_steps`): linear warm-up over `warmup` steps,
    then cosine decay over the time budget, gradients clipped at 1, and an exponential moving average of the
    weights (decay `ema`, ramped up from 0.1 when `ema_warmup`), which `batch_loss` may read (a consistency
    target) and which is returned: (average, steps, running mean of the loss, minutes). `around_step()` is the
    context each forward and backward pass runs in."""
    model.train()
    average = copy.deepcopy(model).eval().requires_grad_(False) if average is None else average
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    started, step, loss_avg = time.monotonic(), 0, None
    deadline = started + minutes * 60
    bar = tqdm(total=int(minutes * 60), unit="s", desc=desc)
    while time.monotonic() < deadline and (max_steps is None or step < max_steps):
        fraction = (time.monotonic() - started) / (minutes * 60)
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))
        with around_step():
            loss = batch_loss(model, average)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(ema, (1 + step) / (10 + step)) if ema_warmup else ema
            for p_average, p in zip(average.parameters(), model.parameters()):
                p_average.lerp_(p, 1 - decay)
        loss_avg = loss.item() if loss_avg is None else 0.99 * loss_avg + 0.01 * loss.item()
        step += 1
        bar.n = int(time.monotonic() - started)
        bar.set_postfix(step=step, loss=f"{loss_avg:.4f}")
        bar.refresh()
    bar.close()
    return average, step, loss_avg, (time.monotonic() - started) / 60
