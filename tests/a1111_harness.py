"""Runs the WebUI extension inside the real AUTOMATIC1111 1.10.1 (../shared/hosts/a1111-v1.10.1.tar.gz) and
prints what it measured as JSON. Run by tests/test_a1111.py with the A1111 venv (.venv-a1111, A1111's own pins):
`python tests/a1111_harness.py A1111_ROOT WORK_DIR`.

Everything is A1111's: its start-up (`initialize`, as `webui.py --nowebui` runs it), its extension loader
finding `scripts/skip_tuning.py` in `extensions/`, `ui.create_ui()`, `process_images`, `scripts/xyz_grid.py`,
`scripts/loopback.py`, the paste wiring of `modules/infotext_utils.py`, `modules/sd_unet.py` and its API
server (uvicorn on 127.0.0.1). The model is a tiny random-weight SD1-layout `LatentDiffusion` checkpoint built
here through `ldm`'s own classes (12 output blocks), with its `.yaml` beside it and a local CLIP tokenizer; the
one thing standing in is a TensorRT-style `SdUnet` (below), which A1111 ships only as an interface.
"""
import json
import sys
import threading
import time
from pathlib import Path

from hand_reference import HandScaled, HandScaledEverywhere, ramp
from harness import REPO, enter_host, free_port, hooks_left
from webui_api import BASE, HIRES, ON, max_diff, png_b64, post, skip
from webui_checkpoints import make_a1111_checkpoints

ROOT, WORK = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
MODELS = WORK / "models" / "Stable-diffusion"
CLIP = WORK / "clip"
PORT = free_port()
sys.argv = ["webui.py", "--nowebui", "--skip-prepare-environment", "--skip-install", "--no-download-sd-model",
            "--use-cpu", "all", "--skip-torch-cuda-test", "--no-half", "--no-half-vae", "--precision", "full",
            "--skip-load-model-at-start", "--skip-version-check", "--data-dir", str(WORK),
            "--ckpt-dir", str(MODELS), "--ckpt", str(MODELS / "tiny.safetensors"), "--port", str(PORT)]
enter_host(ROOT)
(WORK / "extensions").mkdir(parents=True, exist_ok=True)
if not (WORK / "extensions" / "skip-tuning").exists():
    (WORK / "extensions" / "skip-tuning").symlink_to(REPO)
MODELS.mkdir(parents=True, exist_ok=True)

import torch  # noqa: E402

from modules import paths  # noqa: E402,F401  (puts the ldm, sgm and k-diffusion repositories on sys.path)

if not (MODELS / "tiny.safetensors").exists():
    make_a1111_checkpoints(MODELS, CLIP)

from modules import initialize  # noqa: E402

initialize.imports()
initialize.initialize()

import numpy as np  # noqa: E402
import requests  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from modules import initialize_util, processing, script_callbacks, scripts, sd_unet, shared, ui  # noqa: E402
from modules.api.api import Api  # noqa: E402
from modules.call_queue import queue_lock  # noqa: E402

unet = shared.sd_model.model.diffusion_model
results = {"output_blocks": len(unet.output_blocks)}

# webui.py --api: the UI, then the API on the same app, its start-up callbacks, uvicorn on 127.0.0.1.
script_callbacks.before_ui_callback()
shared.demo = ui.create_ui()
app = FastAPI()
initialize_util.setup_middleware(app)
api = Api(app, queue_lock)
script_callbacks.app_started_callback(None, app)
threading.Thread(target=api.launch, kwargs=dict(server_name="127.0.0.1", port=PORT, root_path=""), daemon=True).start()
URL = f"http://127.0.0.1:{PORT}/sdapi/v1"
for _ in range(300):
    try:
        requests.get(f"{URL}/options", timeout=5)
        break
    except requests.ConnectionError:
        time.sleep(0.1)


def call(route, **payload):
    return post(URL, route, **payload)


RHOS = ramp(1.0, 0.5)


# --- the UI: accordion in both tabs, settings, tab, X/Y/Z axes, Send to img2img --------------------------
ours = {}
for tab, runner in (("txt2img", scripts.scripts_txt2img), ("img2img", scripts.scripts_img2img)):
    (script,) = [s for s in runner.alwayson_scripts if s.title() == "Skip Tuning"]
    ours[tab] = runner.inputs[script.args_from:script.args_to]
results["controls"] = {tab: len(controls) for tab, controls in ours.items()}
results["settings"] = sorted(k for k in shared.opts.data_labels if k.startswith("skip_tuning"))
results["tab"] = any(getattr(block, "label", None) == "Skip Tuning" and type(block).__name__ == "Tab"
                     for block in shared.demo.blocks.values())
xyz = next(d.module for d in scripts.scripts_data if d.script_class.__module__ == "xyz_grid.py")
results["xyz_axes"] = [o.label for o in xyz.axis_options if o.label.startswith("[Skip Tuning]")]

# "Send to img2img": infotext_utils.connect_paste_params_buttons wires a click copying the fields whose name is
# in paste_field_names from txt2img's paste fields to img2img's; find that dependency in the built Blocks.
ids = {tab: [c._id for c in controls] for tab, controls in ours.items()}
copied = []
for dep in shared.demo.config["dependencies"]:
    inputs, outputs = dep["inputs"], dep["outputs"]
    if set(ids["txt2img"]) & set(inputs) and set(ids["img2img"]) & set(outputs):
        copied.append([outputs[inputs.index(i)] for i in ids["txt2img"] if i in inputs])
results["send_to_img2img"] = [pairs == ids["img2img"] for pairs in copied]

# Pasting a PNG's parameters into txt2img: the paste button's own function (infotext_utils.connect_paste).
text = "a digit\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64, Skip Tuning: rho_top=0.9; rho_bottom=0.7; start=0.2; end=0.8"
pasted = None
for fn_index, dep in enumerate(shared.demo.config["dependencies"]):
    if set(ids["txt2img"]) <= set(dep["outputs"]) and len(dep["inputs"]) == 1:
        values = shared.demo.fns[fn_index].fn(text)
        by_id = dict(zip(dep["outputs"], values))
        pasted = [by_id[i].get("value") if isinstance(by_id[i], dict) else by_id[i] for i in ids["txt2img"]]
        break
results["pasted"] = pasted

# --- txt2img through the API ---------------------------------------------------------------------------
_, _, (off,), _ = call("txt2img", **BASE)
with HandScaled(RHOS, unet):
    _, _, (reference,), _ = call("txt2img", **BASE)
status, _, (tuned,), info = call("txt2img", **BASE, alwayson_scripts=skip(ON))
results["txt2img"] = dict(status=status, vs_reference=max_diff(tuned, reference), vs_off=max_diff(tuned, off),
                          infotext="Skip Tuning: rho_top=1; rho_bottom=0.5" in info["infotexts"][0],
                          hooks_left=hooks_left(unet))
_, _, (as_dict,), _ = call("txt2img", **BASE, alwayson_scripts=skip([{"rho_top": 1.0, "rho_bottom": 0.5}]))
_, _, (dict_off,), info_off = call("txt2img", **BASE, alwayson_scripts=skip([{"enabled": False, "rho_bottom": 0.5}]))
_, _, (too_many,), _ = call("txt2img", **BASE, alwayson_scripts=skip(ON + [1, 2, 3]))
results["api_dict"] = dict(vs_reference=max_diff(as_dict, reference), disabled_vs_off=max_diff(dict_off, off),
                           disabled_infotext="Skip Tuning" in info_off["infotexts"][0],
                           too_many_cut_by_a1111=max_diff(too_many, reference))

# The API's `infotext` field: A1111 maps it onto script args through infotext_fields only (bug: untuned).
INFOTEXT = "a digit\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64, Skip Tuning: rho_top=1; rho_bottom=0.5; start=0; end=1"
status, _, (via_infotext,), info_infotext = call("txt2img", **BASE, infotext=INFOTEXT)
_, _, (plain_infotext,), _ = call("txt2img", **BASE, infotext=INFOTEXT.split(", Skip Tuning")[0])
results["api_infotext"] = dict(status=status, vs_reference=max_diff(via_infotext, reference),
                               vs_off=max_diff(via_infotext, off), without_key_vs_off=max_diff(plain_infotext, off),
                               infotext="Skip Tuning: rho_top=1; rho_bottom=0.5" in info_infotext["infotexts"][0])

bad = {}
for name, args in (("rho_bottom", [{"rho_bottom": 9}]), ("rho_top", [True, "lots", 0.8, 0.0, 1.0, ""]),
                   ("end_percent", [True, 1.0, 0.8, 0.6, 0.2, ""])):
    status, body, images, _ = call("txt2img", **BASE, alwayson_scripts=skip(args))
    bad[name] = dict(status=status, error=body.get("error"), errors=str(body.get("errors")), images=len(images))
results["api_bad"] = bad
results["hooks_after_api"] = hooks_left(unet)

# --- img2img and Loopback (3 loops on the same p) --------------------------------------------------------
I2I = dict(BASE, init_images=[png_b64(off)], denoising_strength=0.6)
with HandScaled(RHOS, unet):
    _, _, (i2i_reference,), _ = call("img2img", **I2I)
_, _, (i2i_tuned,), _ = call("img2img", **I2I, alwayson_scripts=skip(ON))
_, _, (i2i_off,), _ = call("img2img", **I2I)
results["img2img"] = dict(vs_reference=max_diff(i2i_tuned, i2i_reference), vs_off=max_diff(i2i_tuned, i2i_off))
LOOP = dict(I2I, script_name="loopback", script_args=[3, 0.6, "Linear", "None"])
# A1111's img2img output depends on the request before it (a Loopback run changes a later plain img2img by up
# to 22/255 here, without Skip Tuning); consecutive Loopback runs are identical, so the three compared runs
# follow one another after a first one.
call("img2img", **LOOP)
with HandScaled(RHOS, unet):
    _, _, loop_reference, _ = call("img2img", **LOOP)
_, _, loop_tuned, _ = call("img2img", **LOOP, alwayson_scripts=skip(ON))
_, _, loop_off, _ = call("img2img", **LOOP)
results["loopback"] = dict(images=len(loop_tuned), vs_reference=[max_diff(a, b) for a, b in zip(loop_tuned, loop_reference)],
                           vs_off=[max_diff(a, b) for a, b in zip(loop_tuned, loop_off)], hooks_left=hooks_left(unet))

# --- hires: tuned in both passes by default; the setting leaves the hires pass out -----------------------
HR = dict(BASE, **HIRES)
with HandScaled(RHOS, unet):
    _, _, (hr_reference,), _ = call("txt2img", **HR)
with HandScaled(RHOS, unet, calls=BASE["steps"]):  # Euler: one batched (cond + uncond) U-Net call per step
    _, _, (hr_first_only,), _ = call("txt2img", **HR)
_, _, (hr_tuned,), _ = call("txt2img", **HR, alwayson_scripts=skip(ON))
_, _, (hr_setting_off,), _ = call("txt2img", **HR, alwayson_scripts=skip(ON),
                                  override_settings={"skip_tuning_in_hires_pass": False})
_, _, (hr_off,), _ = call("txt2img", **HR)
results["hires"] = dict(vs_reference=max_diff(hr_tuned, hr_reference),
                        setting_off_vs_first_only=max_diff(hr_setting_off, hr_first_only),
                        setting_off_vs_tuned=max_diff(hr_setting_off, hr_tuned), vs_off=max_diff(hr_tuned, hr_off))

# --- X/Y/Z through the real xyz_grid.py: a rho_bottom axis with the accordion closed ---------------------
current = [o for o in xyz.axis_options if type(o) == xyz.AxisOption or o.is_img2img is False]
x_type = [o.label for o in current].index("[Skip Tuning] rho_bottom")
XYZ = dict(BASE, script_name="x/y/z plot",
           script_args=[x_type, "1, 0.5", [], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0, False])
_, _, xyz_images, _ = call("txt2img", **XYZ)
results["xyz"] = dict(images=len(xyz_images), rho1_vs_off=max_diff(xyz_images[1], off),
                      rho05_vs_reference=max_diff(xyz_images[2], reference), hooks_left=hooks_left(unet))


# --- SDXL layout: sgm's UNetModel (A1111 has hijacked its `th.cat`) called through sgm's OpenAIWrapper, which
# passes `timesteps` as a keyword; 9 output blocks.
from sd_webui_ext import attach  # noqa: E402  (the extension's A1111 path, loaded by A1111 above)
from sgm.modules.diffusionmodules.openaimodel import UNetModel as SgmUNet  # noqa: E402
from sgm.modules.diffusionmodules.wrappers import OpenAIWrapper  # noqa: E402

torch.manual_seed(0)
sgm = SgmUNet(in_channels=4, model_channels=32, out_channels=4, num_res_blocks=2, attention_resolutions=[2, 4],
              channel_mult=[1, 2, 2], num_head_channels=16, use_spatial_transformer=True, transformer_depth=1,
              context_dim=32, use_linear_in_transformer=True, adm_in_channels=64, num_classes="sequential",
              legacy=False).eval()
with torch.no_grad():
    for parameter in sgm.parameters():  # sgm zero-initialises some outputs; every skip should matter
        parameter.normal_(0.0, 0.05)
wrapper = OpenAIWrapper(sgm)
generator = torch.Generator().manual_seed(0)
x, t = torch.randn(2, 4, 16, 16, generator=generator), torch.tensor([700.0, 700.0])
c = {"crossattn": torch.randn(2, 7, 32, generator=generator), "vector": torch.randn(2, 64, generator=generator)}
SDXL_RHOS = ramp(0.9, 0.4, 9)
with torch.no_grad():
    sgm_off = wrapper(x, t, c)
    with HandScaled(SDXL_RHOS, model=sgm):
        sgm_reference = wrapper(x, t, c)
    with attach(sgm, rho_top=0.9, rho_bottom=0.4):
        sgm_tuned = wrapper(x, t, c)
results["sgm"] = dict(output_blocks=len(sgm.output_blocks), vs_reference=float((sgm_tuned - sgm_reference).abs().max()),
                      vs_off=float((sgm_tuned - sgm_off).abs().max()), hooks_left=hooks_left(sgm))


# --- in-process generations, where A1111 shows the script's comments (below the image) ------------------
def generate(args, **fields):
    """A txt2img as the API builds it (default script args, ours in its slots, `is_api` so that the UI-only
    sampler, seed and refiner scripts leave `p` as given), through process_images."""
    runner = scripts.scripts_txt2img
    script_args = api.init_default_script_args(runner)
    (script,) = [s for s in runner.alwayson_scripts if s.title() == "Skip Tuning"]
    script_args[script.args_from:script.args_to] = args
    p = processing.StableDiffusionProcessingTxt2Img(
        sd_model=shared.sd_model, prompt="a digit", steps=4, width=64, height=64, sampler_name="Euler", cfg_scale=3.0,
        seed=1, do_not_save_samples=True, do_not_save_grid=True, **fields)
    p.is_api = True  # before script_args: assigning them runs the scripts' setup
    p.scripts, p.script_args = runner, script_args
    processed = processing.process_images(p)
    p.close()
    return np.asarray(processed.images[0].convert("RGB")).astype(np.int16), processed.comments


class StandInEngine(sd_unet.SdUnet):
    """Stands in for a TensorRT engine (A1111 ships SdUnet only as an interface): it computes on layers of its
    own, here a prediction of zero noise, so the loaded U-Net's output blocks never run."""

    def forward(self, x, timesteps, context, *args, **kwargs):
        return torch.zeros_like(x)


class StandInOption(sd_unet.SdUnetOption):
    label = "Stand-in engine"

    def create_unet(self):
        return StandInEngine()


script_callbacks.on_list_unets(lambda options: options.append(StandInOption()))
sd_unet.list_unets()
shared.opts.data["sd_unet"] = StandInOption.label
engine_tuned, engine_comments = generate(ON)
engine_off, _ = generate([False] + ON[1:])
shared.opts.data["sd_unet"] = "None"
sd_unet.apply_unet("None")
results["sd_unet"] = dict(tuned_vs_off=max_diff(engine_tuned, engine_off), comments=engine_comments,
                          hooks_left=hooks_left(unet))

# The refiner and a hires checkpoint: "other" (12 output blocks) and "deep" (8) have a .yaml of their own, so A1111
# loads each as a new model object mid-generation; each generation starts on the main model again
# (processing.py process_images reloads it). Whichever U-Net samples is tuned, with the ramp for its own blocks.
for case, fields in (("refiner", dict(refiner_checkpoint="other.safetensors", refiner_switch_at=0.5)),
                     ("refiner_other_layout", dict(refiner_checkpoint="deep.safetensors", refiner_switch_at=0.5)),
                     ("hires_checkpoint", dict(HIRES, hr_checkpoint_name="other.safetensors")),
                     ("hires_checkpoint_other_layout", dict(HIRES, hr_checkpoint_name="deep.safetensors"))):
    switched_off, _ = generate([False] + ON[1:], **fields)
    with HandScaledEverywhere(1.0, 0.5) as everywhere:
        switched_reference, _ = generate([False] + ON[1:], **fields)
    switched, comments = generate(ON, **fields)
    results[case] = dict(comments=comments, vs_reference=max_diff(switched, switched_reference),
                         vs_off=max_diff(switched, switched_off),
                         unets=sorted(len(m.output_blocks) for m in everywhere.scaled),
                         hooks_left=[hooks_left(m) for m in everywhere.scaled])
print(json.dumps(results))
sys.stdout.flush()
