"""What Skip Tuning costs on full-size U-Nets: time per U-Net call, time inside the patch, peak memory.

SD1.5's and SDXL's exact U-Net configurations, built through ComfyUI's own classes with random weights
(no download), and SD1.5's through the original ldm package for the WebUI's `attach`. Variants are timed
interleaved in one run, so machine noise hits them alike; ratios are to the unpatched U-Net.

    .venv/bin/python -m bench.cost                     # CPU; writes bench_output/cost.json
    .venv/bin/python -m bench.cost --update-readme     # and regenerates README's performance section
    .venv/bin/python -m bench.cost --device cuda       # on a GPU
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from skip_tuning_lab.comfy_host import boot_comfy, load_pack
from skip_tuning_lab.readme import replace_section

REPO = Path(__file__).resolve().parents[1]
SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1,
    "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None, "use_linear_in_transformer": False,
    "context_dim": 768, "num_heads": 8, "use_temporal_attention": False, "use_temporal_resblock": False,
}
SDXL_UNET = {
    "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
    "use_spatial_transformer": True, "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816,
    "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
# v1-inference.yaml's unet_config, for ldm's UNetModel (what A1111 runs for SD1.x).
SD15_LDM = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8, "use_spatial_transformer": True,
    "transformer_depth": 1, "context_dim": 768, "use_checkpoint": False, "legacy": False,
}


def fill_random(module, seed=0):
    """Small random weights: the allocator's leftovers (comfy.ops skips init) can hold NaNs and denormals."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def comfy_model(config, device):
    import comfy.model_patcher
    import comfy.supported_models

    base = comfy.supported_models.SDXL if config is SDXL_UNET else comfy.supported_models.SD15
    model_config = type("FullSize", (base,), {"unet_config": config, "unet_extra_config": {}})(dict(config))
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({}, device=torch.device("cpu"))
    fill_random(model.diffusion_model)
    model.to(device).eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


class PatchTimer:
    """Adds up the time spent inside wrapped output-block patches."""

    def __init__(self, device):
        self.total, self.device = 0.0, device

    def wrap(self, patch):
        def timed(h, hsp, transformer_options):
            synchronize(self.device)
            start = time.perf_counter()
            out = patch(h, hsp, transformer_options)
            synchronize(self.device)
            self.total += time.perf_counter() - start
            return out
        return timed

    def options(self, model):
        """A copy of `model`'s transformer_options with every output-block patch wrapped."""
        options = dict(model.model_options["transformer_options"])
        patches = dict(options.get("patches", {}))
        patches["output_block_patch"] = [self.wrap(p) for p in patches.get("output_block_patch", [])]
        options["patches"] = patches
        return options


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def share_inside(call, timer, rounds, device) -> float:
    """Time inside the timer's patches as a share of the whole call, over `rounds` calls after a warm-up."""
    with torch.inference_mode():
        call()
    timer.total = 0.0
    synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        with torch.inference_mode():
            call()
    synchronize(device)
    return timer.total / (time.perf_counter() - start)


def comfy_call(model, inputs, sigma):
    """One model call as ComfyUI's sampler makes it: apply_model with the patcher's wrappers, a new sigmas
    tensor per call."""
    options = model.model_options["transformer_options"].copy()
    sigmas = torch.full((inputs["x"].shape[0],), sigma, device=inputs["x"].device)
    options["sigmas"] = sigmas
    options["wrappers"] = model.wrappers
    return model.model.apply_model(inputs["x"], sigmas, c_crossattn=inputs["context"], y=inputs.get("y"),
                                   transformer_options=options)


def interleaved_times(calls: dict, repeats: int, device) -> dict:
    """Seconds per call of each variant, round-robin with the order rotated every round, so that each
    variant takes each place in turn (one warm-up round first)."""
    names = list(calls)
    times = {name: [] for name in names}
    for round_index in range(repeats + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            with torch.inference_mode():
                calls[name]()
            synchronize(device)
            if round_index:
                times[name].append(time.perf_counter() - start)
    return times


def peak_bytes(call, device) -> int:
    """Peak bytes of tensors alive during one call, above those alive before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.inference_mode():
            call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def per_block_python_us(model, hsp, sigma, blocks, rounds=2000) -> float:
    """Microseconds per block call outside the range: the wrapper's range check, once per model call, spread
    over the blocks, plus each block's patch call (a multiply by 1)."""
    from skip_tuning_core.patcher import output_block_patch, with_scales

    base = model.model_options["transformer_options"]
    start = time.perf_counter()
    for _ in range(rounds):
        options = dict(with_scales(base, model.model, hsp, torch.tensor([sigma])))
        for j in range(blocks):
            options["block"] = ("output", j)
            output_block_patch(hsp, hsp, options)
    return (time.perf_counter() - start) / (rounds * blocks) * 1e6


def summarize(times: dict, base: str = "unpatched") -> dict:
    """Median seconds, and the median and spread (IQR) of per-round ratios to the base variant."""
    out = {}
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, times[base])]
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [min(ratios), 0, max(ratios)]
        out[name] = {"median_s": statistics.median(values), "ratio": statistics.median(ratios),
                     "ratio_iqr": [q[0], q[2]]}
    return out


def bench_comfy(pack, name, config, latent, batch, repeats, device):
    """ComfyUI: unpatched, Skip Tuning active / outside range / rho 1, FreeU_V2, and both chained."""
    import comfy_extras.nodes_freelunch as freelunch

    model = comfy_model(config, device)
    sampling = model.get_model_object("model_sampling")
    sigma = float(sampling.percent_to_sigma(0.5))
    generator = torch.Generator().manual_seed(0)
    inputs = {"x": torch.randn(batch, 4, latent, latent, generator=generator).to(device),
              "timesteps": sampling.timestep(torch.full((batch,), sigma)).to(device),
              "context": torch.randn(batch, 77, config["context_dim"], generator=generator).to(device)}
    if config.get("adm_in_channels"):
        inputs["y"] = torch.randn(batch, config["adm_in_channels"], generator=generator).to(device)
    skip = pack.nodes.skip_tuning.SkipTuning().apply

    def freeu(m):
        return freelunch.FreeU_V2().patch(m, 1.3, 1.4, 0.9, 0.2)[0]

    variants = {
        "unpatched": model,
        "skip active": skip(model, 1.0, 0.8, 0.0, 1.0)[0],
        "skip outside range": skip(model, 1.0, 0.8, 0.9, 1.0)[0],
        "skip rho=1": skip(model, 1.0, 1.0, 0.0, 1.0)[0],
        "FreeU_V2": freeu(model),
        "FreeU_V2 + skip": skip(freeu(model), 1.0, 0.8, 0.0, 1.0)[0],
    }
    times = interleaved_times({k: (lambda m=m: comfy_call(m, inputs, sigma)) for k, m in variants.items()},
                              repeats, device)
    result = summarize(times)
    for key in ("skip active", "skip outside range", "FreeU_V2"):
        timer = PatchTimer(device)
        patched = variants[key].clone()
        patched.model_options["transformer_options"] = timer.options(variants[key])
        result[key]["in_patch_share"] = share_inside(lambda: comfy_call(patched, inputs, sigma), timer,
                                                     max(2, repeats // 2), device)
    base_peak = peak_bytes(lambda: comfy_call(model, inputs, sigma), device)
    result["unpatched"]["peak_bytes"] = base_peak
    unet = model.model.diffusion_model
    skip_bytes = max(largest_skip_bytes(unet, inputs))
    for key, variant in variants.items():
        delta = peak_bytes(lambda v=variant: comfy_call(v, inputs, sigma), device) - base_peak
        result[key].update(peak_delta_bytes=delta, peak_delta_skips=delta / skip_bytes)
    hsp = torch.zeros(1, 4, 8, 8, device=device)
    result["skip outside range"]["python_us_per_block"] = per_block_python_us(
        variants["skip outside range"], hsp, sigma, len(unet.output_blocks))
    return {"model": name, "host": "ComfyUI", "latent": latent, "batch": batch, "variants": result,
            "largest_skip_bytes": skip_bytes}


def largest_skip_bytes(unet, inputs):
    """Bytes of each skip tensor the input blocks push, from hooks on each block's last layer (ComfyUI
    runs a block's layers one by one, so the block itself is never called; ldm calls both)."""
    sizes = []
    handles = [list(block.children())[-1].register_forward_hook(
        lambda m, a, out: sizes.append(out.numel() * out.element_size())) for block in unet.input_blocks]
    try:
        with torch.inference_mode():
            unet(inputs["x"], inputs["timesteps"], inputs["context"], y=inputs.get("y"))
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def nothing(*args, **kwargs):
    """Stands for the module's own call where only the hook's work is timed."""


def hook_share(unet, call, device, rounds):
    """Share of a U-Net call spent in what attach adds (the U-Net's factors, each layer's scaling), timed on the
    very inputs the layers receive."""
    from sd_webui_ext import attach
    from skip_tuning_core.hooks import read_timestep_then_call, scale_skip_then_call

    blocks = [next(iter(block.children())) for block in unet.output_blocks]
    seen = {}
    def probe(j):
        def keep_input(module, args):
            seen.setdefault(j, args[0].clone())
        return keep_input

    probes = [layer.register_forward_pre_hook(probe(j)) for j, layer in enumerate(blocks)]
    with torch.inference_mode():
        call()
    for probe in probes:
        probe.remove()
    step = statistics.median(interleaved_times({"step": call}, rounds, device)["step"])
    timesteps = torch.full((seen[0].shape[0],), 500.0, device=device)
    total = 0.0
    with attach(unet, rho_top=1.0, rho_bottom=0.8):
        for _ in range(rounds):
            inputs = {j: tensor.clone() for j, tensor in seen.items()}
            synchronize(device)
            start = time.perf_counter()
            read_timestep_then_call(unet, nothing, (inputs[0], timesteps), {})
            for j, layer in enumerate(blocks):
                scale_skip_then_call(layer, nothing, (inputs[j],), {})
            synchronize(device)
            total += time.perf_counter() - start
    return total / rounds / step


def bench_webui(latent, batch, repeats, device):
    """A1111: ldm's SD1.5 U-Net unpatched, with `attach` active, and with `attach` outside its range."""
    from ldm.modules.diffusionmodules.openaimodel import UNetModel

    from sd_webui_ext import attach
    from skip_tuning_core.hooks import read_timestep_then_call, scale_skip_then_call

    unet = UNetModel(**SD15_LDM).eval()
    fill_random(unet)
    unet.to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, latent, latent, generator=generator).to(device)
    context = torch.randn(batch, 77, 768, generator=generator).to(device)

    def call():
        return unet(x, torch.full((batch,), 500.0, device=device), context)

    def with_hooks(**options):
        def run():
            with attach(unet, rho_top=1.0, rho_bottom=0.8, **options):
                return call()
        return run

    times = interleaved_times({"unpatched": call, "attach active": with_hooks(),
                               "attach outside range": with_hooks(start_percent=0.9, end_percent=1.0)},
                              repeats, device)
    result = summarize(times)
    base_peak = peak_bytes(call, device)
    result["unpatched"]["peak_bytes"] = base_peak
    skip_bytes = max(largest_skip_bytes(unet, {"x": x, "timesteps": torch.full((batch,), 500.0, device=device),
                                               "context": context}))
    for key, run in (("attach active", with_hooks()),
                     ("attach outside range", with_hooks(start_percent=0.9, end_percent=1.0))):
        delta = peak_bytes(run, device) - base_peak
        result[key].update(peak_delta_bytes=delta, peak_delta_skips=delta / skip_bytes)
    result["attach active"]["in_patch_share"] = hook_share(unet, call, device, max(2, repeats // 2))
    rounds = 2000
    args = (torch.zeros(1, 8, 4, 4, device=device),)
    layers = [next(iter(block.children())) for block in unet.output_blocks]
    with attach(unet, rho_bottom=0.8, start_percent=0.9, end_percent=1.0):
        start = time.perf_counter()
        for _ in range(rounds):
            read_timestep_then_call(unet, nothing, (x, torch.tensor([500.0], device=device)), {})
            for layer in layers:
                scale_skip_then_call(layer, nothing, args, {})
        result["attach outside range"]["python_us_per_block"] = (time.perf_counter() - start) / (
            rounds * len(layers)) * 1e6
    return {"model": "SD1.5", "host": "A1111 (ldm + attach)", "latent": latent, "batch": batch, "variants": result,
            "largest_skip_bytes": skip_bytes}


def table(runs) -> str:
    """The README's performance table."""
    lines = ["| model | host | variant | time vs unpatched (median, IQR) | in patch | peak memory vs unpatched | "
             "Python per block call |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        for name, v in run["variants"].items():
            if name == "unpatched":
                continue
            share = f"{v['in_patch_share']:.3%}" if "in_patch_share" in v else ""
            memory = f"{v['peak_delta_bytes'] / 2**20:+.1f} MiB ({v['peak_delta_skips']:+.2f} skip tensors)"
            python = f"{v['python_us_per_block']:.1f} µs" if "python_us_per_block" in v else ""
            lines.append(f"| {run['model']} {run['latent']}×{run['latent']}, batch {run['batch']} | {run['host']} | "
                         f"{name} | {v['ratio']:.4f} ({v['ratio_iqr'][0]:.4f}-{v['ratio_iqr'][1]:.4f}) | {share} | "
                         f"{memory} | {python} |")
    return "\n".join(lines)


# (variant, measure, limit): the targets. An active patch may cost 0.5 %; one with nothing to do
# (outside its range, or rho = 1 everywhere) does no tensor work, so 0.1 % and 20 µs of Python per block.
TARGETS = (
    ("skip active", "ratio", 1.005), ("skip active", "in_patch_share", 0.005),
    ("skip active", "peak_delta_skips", 1.0),
    ("skip outside range", "ratio", 1.001), ("skip outside range", "in_patch_share", 0.001),
    ("skip outside range", "python_us_per_block", 20.0), ("skip rho=1", "ratio", 1.001),
    ("attach active", "ratio", 1.005), ("attach active", "in_patch_share", 0.005),
    ("attach active", "peak_delta_skips", 1.0),
    ("attach outside range", "ratio", 1.001), ("attach outside range", "python_us_per_block", 20.0),
)


def verdict(figures: dict, measure: str, limit: float) -> str:
    """Whether one target holds in this run. A time ratio counts only when its whole IQR is within the
    limit; otherwise the run cannot tell it from machine noise, which the rho=1 row (nothing installed)
    shows, and the in-patch share is the figure that decides."""
    if measure != "ratio":
        return "holds" if figures[measure] <= limit else "missed"
    return "holds" if figures["ratio_iqr"][1] <= limit else "not shown (noise)"


def target_rows(runs) -> list:
    """Each target of the variants the runs have, with this run's figure and the verdict."""
    rows = []
    for run in runs:
        for name, measure, limit in TARGETS:
            figures = run["variants"].get(name)
            if figures is not None:
                rows.append({"model": run["model"], "host": run["host"], "variant": name, "measure": measure,
                             "value": figures[measure], "iqr": figures.get("ratio_iqr") if measure == "ratio" else None,
                             "limit": limit, "verdict": verdict(figures, measure, limit)})
    return rows


def target_table(rows) -> str:
    """The README's target table, from `target_rows`."""
    formats = {"ratio": "{:.4f}", "in_patch_share": "{:.3%}", "peak_delta_skips": "{:+.2f} skip tensors",
               "python_us_per_block": "{:.1f} µs"}
    limits = {"ratio": "≤ {:.3f}", "in_patch_share": "≤ {:.1%}", "peak_delta_skips": "≤ {:+.0f} skip tensor",
              "python_us_per_block": "≤ {:.0f} µs"}
    labels = {"ratio": "time vs unpatched", "in_patch_share": "in patch", "peak_delta_skips": "peak memory",
              "python_us_per_block": "Python per block call"}
    lines = ["| model | variant | measure | this run | target | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        measure = row["measure"]
        value = formats[measure].format(row["value"])
        if row["iqr"]:
            value += " (IQR {:.4f}-{:.4f})".format(*row["iqr"])
        lines.append(f"| {row['model']}, {row['host']} | {row['variant']} | {labels[measure]} | {value} | "
                     f"{limits[measure].format(row['limit'])} | {row['verdict']} |")
    return "\n".join(lines)


def pin_to_cores(count: int):
    """Keep the run on `count` fixed cores: a call that moves between cores meets other processes' load
    on each, which spreads the times of identical calls."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:count]))


def start_bench(description: str, out_name: str, repeats: int, latent: int, latent_help: str = None):
    """A benchmark's command line parsed, its CPU run pinned and ComfyUI started: (args, device, pack, machine),
    `machine` naming what ran it for the JSON and README."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--latent", type=int, default=latent, help=latent_help)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (and cores the run is pinned to)")
    parser.add_argument("--out", type=Path, default=REPO / "bench_output" / out_name)
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        pin_to_cores(args.threads)
    boot_comfy()
    import comfy.cli_args

    comfy.cli_args.args.cpu = device.type == "cpu"
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()} CPU, pinned to {args.threads} core(s), "
                    f"{args.threads} thread(s)")
    return args, device, load_pack(), machine


def main():
    args, device, pack, machine = start_bench(__doc__, "cost.json", repeats=4, latent=64,
                                              latent_help="SD1.5 latent size (SDXL uses half)")
    runs = [bench_comfy(pack, "SD1.5", SD15_UNET, args.latent, 2, args.repeats, device)]
    print(table(runs), flush=True)
    runs.append(bench_comfy(pack, "SDXL", SDXL_UNET, args.latent // 2, 2, args.repeats, device))
    print(table(runs[-1:]), flush=True)
    runs.append(bench_webui(args.latent, 2, args.repeats, device))
    targets = target_rows(runs)
    report = {"device": machine, "torch": torch.__version__, "repeats": args.repeats, "runs": runs,
              "targets": targets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    text = f"{table(runs)}\n\nTargets:\n\n{target_table(targets)}"
    print(text)
    if args.update_readme:
        replace_section(REPO / "README.md", "performance",
                        f"Measured by `.venv/bin/python -m bench.cost --update-readme` on {machine} "
                        f"(torch {torch.__version__}, random weights, {args.repeats} interleaved rounds):\n\n{text}")


if __name__ == "__main__":
    main()
