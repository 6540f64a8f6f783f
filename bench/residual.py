"""What Residual Tuning (DiT, experimental) costs: time per model call and peak memory on a Flux-width DiT.

ComfyUI's Flux class at FLUX.1-dev's width (hidden 3072, 24 heads, its embedders) with random weights and
fewer blocks (the cost is per block: ratios do not depend on the depth), timed in interleaved rounds as
bench/cost.py times the U-Nets. Two ways in: the ComfyUI node (`patches_replace["dit"]` replacements, copies
of each block's inputs) and the module hooks that Forge and diffusers use (sd_webui_ext/forge.py on the same
model, attached and removed around each call: an overestimate, since a generation attaches once). "Outside
range" runs where the settings' range does not reach. Peak memory is counted in streams: the joint sequence
one block takes (text and image tokens at the model's width).

    .venv/bin/python -m bench.residual                   # CPU; writes bench_output/residual.json
    .venv/bin/python -m bench.residual --update-readme   # and regenerates README's section
    .venv/bin/python -m bench.residual --device cuda     # on a GPU
"""
import json
import statistics
import time

import torch

from bench.cost import (REPO, comfy_call, fill_random, interleaved_times, peak_bytes, start_bench, summarize,
                        synchronize)
from skip_tuning_lab.readme import replace_section

FLUX_WIDTH = {
    "image_model": "flux", "in_channels": 16, "out_channels": 16, "patch_size": 2, "vec_in_dim": 768,
    "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "axes_dim": [16, 56, 56],
    "theta": 10000, "qkv_bias": True, "guidance_embed": True,
}


def flux_model(depth, single, device):
    import comfy.model_patcher
    import comfy.supported_models

    config = {**FLUX_WIDTH, "depth": depth, "depth_single_blocks": single}
    model_config = comfy.supported_models.Flux(dict(config))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    fill_random(model.diffusion_model)
    model.to(device).eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def bench_residual(pack, latent, batch, repeats, device, depth=1, single=2):
    from sd_webui_ext.forge import attach_residual
    from sd_webui_ext.params import ResidualParams

    model = flux_model(depth, single, device)
    sigma = float(model.get_model_object("model_sampling").percent_to_sigma(0.5))
    generator = torch.Generator().manual_seed(0)
    inputs = {"x": torch.randn(batch, 16, latent, latent, generator=generator).to(device),
              "context": torch.randn(batch, 64, 4096, generator=generator).to(device),
              "y": torch.randn(batch, 768, generator=generator).to(device),
              "guidance": torch.full((batch,), 3.5, device=device)}
    node = pack.nodes.residual_tuning.ResidualTuning().apply
    variants = {
        "unpatched": model,
        "node active": node(model, 0.95, 0.95, "all", 0.0, 1.0)[0],
        "node outside range": node(model, 0.95, 0.95, "all", 0.9, 1.0)[0],
    }
    calls = {name: (lambda m=m: comfy_call(m, inputs, sigma)) for name, m in variants.items()}
    hooks = {"hooks active": ResidualParams(True, 0.95, 0.95, "all", 0.0, 1.0),
             "hooks outside range": ResidualParams(True, 0.95, 0.95, "all", 0.9, 1.0)}

    def hooked(params):
        def call():
            with attach_residual(model, params):
                return comfy_call(model, inputs, sigma)
        return call

    calls.update({name: hooked(params) for name, params in hooks.items()})
    result = summarize(interleaved_times(calls, repeats, device))
    base_peak = peak_bytes(calls["unpatched"], device)
    tokens = (latent // 2) ** 2 + inputs["context"].shape[1]
    stream_bytes = batch * tokens * FLUX_WIDTH["hidden_size"] * 4  # the joint stream one block takes, fp32
    for name, call in calls.items():
        delta = peak_bytes(call, device) - base_peak
        result[name].update(peak_delta_bytes=delta, peak_delta_streams=delta / stream_bytes)
    result["added work"] = {"share": added_share(model, calls["unpatched"], device)}
    return {"model": f"Flux width, {depth} double + {single} single blocks", "latent": latent, "batch": batch,
            "tokens": tokens, "variants": result, "stream_bytes": stream_bytes}


def added_share(model, call, device, rounds=20):
    """The work each tuned block call adds (a copy of each input stream, then out - (1 - rho) * input), timed
    alone on the very tensors the blocks take and give, as a share of an unpatched call: free of the noise
    that moves whole calls."""
    from skip_tuning_core.residual import identity_scaled

    dit = model.model.diffusion_model
    seen = []

    def keep(module, args, kwargs, out):
        inputs = [kwargs["img"], kwargs["txt"]] if "img" in kwargs else [args[0]]
        outputs = list(out) if isinstance(out, tuple) else [out]
        seen.append([(x.clone(), y.clone()) for x, y in zip(inputs, outputs)])

    hooks = [block.register_forward_hook(keep, with_kwargs=True)
             for block in list(dit.double_blocks) + list(dit.single_blocks)]
    with torch.inference_mode():
        call()
    for hook in hooks:
        hook.remove()
    step = statistics.median(interleaved_times({"call": call}, rounds // 4, device)["call"])
    rho = torch.tensor(0.95, device=device)
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(rounds):
            for streams in seen:
                for x, y in streams:
                    identity_scaled(y, x.clone(), rho)
    synchronize(device)
    return (time.perf_counter() - start) / rounds / step


def table(run) -> str:
    lines = ["| variant | time vs unpatched (median, IQR) | peak memory vs unpatched |", "| --- | --- | --- |"]
    for name, v in run["variants"].items():
        if name not in ("unpatched", "added work"):
            lines.append(f"| {name} | {v['ratio']:.4f} ({v['ratio_iqr'][0]:.4f}-{v['ratio_iqr'][1]:.4f}) | "
                         f"{v['peak_delta_bytes'] / 2**20:+.1f} MiB ({v['peak_delta_streams']:+.2f} streams) |")
    return "\n".join(lines) + (f"\n\nThe work a tuned call adds (each block's copy and subtraction, timed alone on "
                               f"its own tensors): {run['variants']['added work']['share']:.3%} of an unpatched call.")


def main():
    args, device, pack, machine = start_bench(__doc__, "residual.json", repeats=6, latent=16,
                                              latent_help="latent size (16 channels; tokens = (latent/2)^2 + 64)")
    run = bench_residual(pack, args.latent, 1, args.repeats, device)
    text = (f"{run['model']}, latent {run['latent']}×{run['latent']} ({run['tokens']} tokens with 64 text tokens), "
            f"batch {run['batch']}; a stream is {run['stream_bytes'] / 2**20:.1f} MiB:\n\n{table(run)}")
    print(text)
    report = {"device": machine, "torch": torch.__version__, "repeats": args.repeats, "run": run}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    if args.update_readme:
        replace_section(REPO / "README.md", "performance-residual",
                        f"Measured by `.venv/bin/python -m bench.residual --update-readme` on {machine} "
                        f"(torch {torch.__version__}, random weights, {args.repeats} interleaved rounds). {text}")


if __name__ == "__main__":
    main()
