"""What Skip Tuning costs under torch.compile: time per sampling step, compiled with Skip Tuning against
compiled alone and against compiled FreeU_V2, and the graphs each variant compiles.

A small SD1.5-shaped U-Net (12 output blocks, 64 base channels, random weights) built through ComfyUI's
own classes, compiled with ComfyUI's own compile wrapper (what its TorchCompileModel node installs) and
PyTorch attention. A step is one model call with the cond and uncond halves batched (CFG), made the way
the sampler makes it. "compiled again" is a second, identical compiled model: its distance from 1.0 is
the noise of the run. The same again for diffusers: a UNet2DConditionModel of the same shape compiled with
`torch.compile`, alone, with `skip_tuning_diffusers.attach` and with diffusers' own `enable_freeu`.

    .venv/bin/python -m bench.compile                     # CPU (inductor compiles take a few minutes)
    .venv/bin/python -m bench.compile --update-readme     # and regenerates README's compile section
    .venv/bin/python -m bench.compile --device cuda       # on a GPU
"""
import copy
import json
from pathlib import Path

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from bench.cost import SD15_UNET, comfy_call, comfy_model, interleaved_times, start_bench, summarize
from skip_tuning_lab.readme import replace_section

REPO = Path(__file__).resolve().parents[1]
SMALL_SD15 = dict(SD15_UNET, model_channels=64, num_heads=4)
TARGET = 1.02  # compiled + Skip Tuning against compiled alone


def variants(pack, model):
    """The compared models, each compiled on its own clone; the first is the base of the ratios."""
    import comfy_extras.nodes_freelunch as freelunch
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    skip = pack.nodes.skip_tuning.SkipTuning().apply
    plain = {
        "compiled": model,
        "compiled again (null)": model,
        "compiled + Skip Tuning (whole run)": skip(model, 1.0, 0.8, 0.0, 1.0)[0],
        "compiled + Skip Tuning (range 0.3-0.7, inside)": skip(model, 1.0, 0.8, 0.3, 0.7)[0],
        "compiled + Skip Tuning (range 0.8-1.0, outside)": skip(model, 1.0, 0.8, 0.8, 1.0)[0],
        "compiled + FreeU_V2": freelunch.FreeU_V2().patch(model, 1.3, 1.4, 0.9, 0.2)[0],
    }
    out = {"not compiled": model}
    for name, variant in plain.items():
        variant = variant.clone()
        set_torch_compile_wrapper(variant, backend="inductor")
        out[name] = variant
    return out


def diffusers_variants(device):
    """diffusers: the same SD1.5 shape as a UNet2DConditionModel, each variant compiled on its own copy."""
    from skip_tuning_lab.comfy_host import declare_torchvision_ops

    declare_torchvision_ops()
    import diffusers

    import skip_tuning_diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=32, block_out_channels=(64, 128, 256, 256), layers_per_block=2, attention_head_dim=4,
        cross_attention_dim=SMALL_SD15["context_dim"]).to(device).eval()
    plain = {name: copy.deepcopy(unet) for name in ("compiled", "compiled again (null)", "compiled + attach (whole run)",
                                                    "compiled + attach (range 0.3-0.7, inside)",
                                                    "compiled + enable_freeu")}
    skip_tuning_diffusers.attach(plain["compiled + attach (whole run)"], rho_bottom=0.8)
    skip_tuning_diffusers.attach(plain["compiled + attach (range 0.3-0.7, inside)"], rho_bottom=0.8,
                                 start_percent=0.3, end_percent=0.7)
    plain["compiled + enable_freeu"].enable_freeu(s1=0.9, s2=0.2, b1=1.3, b2=1.4)
    return {"not compiled": unet, **{name: torch.compile(m, backend="inductor") for name, m in plain.items()}}


def compile_counts(calls: dict) -> dict:
    """Graphs each variant compiles on its first call, and whether dynamo broke or skipped anything."""
    torch._dynamo.reset()
    counters.clear()
    out = {}
    for name, call in calls.items():
        before = counters["stats"]["unique_graphs"]
        with torch.inference_mode():
            call()
        out[name] = counters["stats"]["unique_graphs"] - before
    out["graph breaks"] = sum(counters["graph_break"].values())
    out["frames skipped"] = counters["frames"]["total"] - counters["frames"]["ok"]
    out["recompile-limit hits"] = sum(v for k, v in counters["stats"].items() if "limit" in k or "cache_size" in k)
    return out


def verdict(figures: dict) -> str:
    """As in bench.cost: a ratio counts only when its whole IQR is within the target."""
    return "holds" if figures["ratio_iqr"][1] <= TARGET else "not shown (noise)"


def table(result: dict, graphs: dict) -> str:
    lines = ["| variant | graphs compiled | ms per step (median) | time vs compiled (median, IQR) | target |",
             "| --- | --- | --- | --- | --- |"]
    for name, figures in result.items():
        compiled_graphs = graphs.get(name, "–") if name != "not compiled" else "–"
        target = (f"≤ {TARGET} ({verdict(figures)})" if "Skip Tuning" in name or "attach" in name else "")
        lines.append(f"| {name} | {compiled_graphs} | {figures['median_s'] * 1e3:.1f} | {figures['ratio']:.4f} "
                     f"({figures['ratio_iqr'][0]:.4f}-{figures['ratio_iqr'][1]:.4f}) | {target} |")
    lines.append("")
    lines.append(f"Graph breaks: {graphs['graph breaks']}; frames skipped: {graphs['frames skipped']}; "
                 f"recompile-limit hits: {graphs['recompile-limit hits']}.")
    return "\n".join(lines)


def main():
    args, device, pack, machine = start_bench(__doc__, "compile.json", repeats=10, latent=32)
    model = comfy_model(SMALL_SD15, device)
    sampling = model.get_model_object("model_sampling")
    sigma = float(sampling.percent_to_sigma(0.5))
    generator = torch.Generator().manual_seed(0)
    inputs = {"x": torch.randn(2, 4, args.latent, args.latent, generator=generator).to(device),
              "context": torch.randn(2, 77, SMALL_SD15["context_dim"], generator=generator).to(device)}
    calls = {name: (lambda m=m: comfy_call(m, inputs, sigma)) for name, m in variants(pack, model).items()}
    graphs = compile_counts(calls)
    print(graphs, flush=True)
    result = summarize(interleaved_times(calls, args.repeats, device), base="compiled")
    text = table(result, graphs)
    print(text, flush=True)
    t = torch.full((2,), 999.0 * 0.5, device=device)  # inside the range variant's 0.3-0.7
    unets = diffusers_variants(device)
    diffusers_calls = {name: (lambda m=m: m(inputs["x"], t, inputs["context"])) for name, m in unets.items()}
    diffusers_graphs = compile_counts(diffusers_calls)
    print(diffusers_graphs, flush=True)
    diffusers_result = summarize(interleaved_times(diffusers_calls, args.repeats, device), base="compiled")
    diffusers_text = table(diffusers_result, diffusers_graphs)
    print(diffusers_text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": machine, "torch": torch.__version__, "repeats": args.repeats,
                                    "latent": args.latent, "graphs": graphs, "variants": result,
                                    "diffusers": {"graphs": diffusers_graphs, "variants": diffusers_result}},
                                   indent=1))
    if args.update_readme:
        replace_section(REPO / "README.md", "compile",
                        f"Measured by `.venv/bin/python -m bench.compile --update-readme` on {machine} (torch "
                        f"{torch.__version__}, inductor, {args.latent}×{args.latent} latent, batch 2, "
                        f"{args.repeats} interleaved rounds).\n\nComfyUI (its compile wrapper, Skip Tuning "
                        f"nodes):\n\n{text}\n\ndiffusers (`torch.compile(unet)`, `skip_tuning_diffusers.attach` "
                        f"before it):\n\n{diffusers_text}")


if __name__ == "__main__":
    main()
