"""Runs the WebUI script inside SD.Next's own script machinery; prints what it measured as JSON.

Run by tests/test_sdnext.py in a process of its own (SD.Next's `modules` package is not A1111's stand-in
the other WebUI tests import): `python tests/sdnext_harness.py SDNEXT_ROOT`.

Real, from ../shared/hosts/sdnext-*.tar.gz: `modules/scripts_manager.py` (its loader `load_scripts`, which
imports scripts/skip_tuning.py from the extension folder, `ScriptRunner.initialize_scripts` and the
`before_process` ... `postprocess` calls that catch a script's exceptions), `modules/scripts.py`,
`modules/script_callbacks.py` (`after_process_callback`), `modules/ui_components.py`, `modules/errors.py`;
and a real diffusers `StableDiffusionPipeline` of tiny random components. Stand-ins (SD.Next's
`modules/shared.py` and `modules/extensions.py` import its whole settings and git layer, and
`modules/processing.py` its whole WebUI) are below, each naming what it mirrors.
"""
import json
import sys
import tempfile
import types
from pathlib import Path

from harness import REPO, enter_host, hooks_left, stand_in

enter_host(Path(sys.argv[1]))
import diffusers  # noqa: E402
import gradio as gr  # noqa: E402
import torch  # noqa: E402

# modules/shared.py: `opts` (the settings; the script reads its own three), `sd_model` (the loaded pipeline).
shared = stand_in("modules.shared")
shared.opts = types.SimpleNamespace()
shared.sd_model = None
# modules/extensions.py: `active()` lists the enabled extensions; `Extension.list_files` (lines 192-207)
# returns a ScriptFile per .py file of the extension's `scripts/` folder, priority '50'.
extensions = stand_in("modules.extensions")


def list_files(subdir, extension):
    from modules.scripts_manager import ScriptFile
    folder = REPO / subdir
    return [ScriptFile(str(REPO), f.name, str(f), "50") for f in sorted(folder.glob("*.py"))] if folder.is_dir() else []


extensions.active = lambda: [types.SimpleNamespace(list_files=list_files)]

from modules import paths, script_callbacks, scripts_manager  # noqa: E402

import skip_tuning_diffusers  # noqa: E402
from test_diffusers import tiny_pipeline  # noqa: E402

shared.opts.postprocessing_enable_in_main_ui = []  # read by scripts_auto_postprocessing (no such scripts here)
paths.script_path = tempfile.mkdtemp()  # SD.Next's own scripts/ stay out: only the extension is loaded
scripts_manager.load_scripts()
runner = scripts_manager.scripts_txt2img
runner.initialize_scripts(is_img2img=False)
(script,) = [s for s in runner.alwayson_scripts if s.title() == "Skip Tuning"]
(residual,) = [s for s in runner.alwayson_scripts if s.title() == "Residual Tuning (DiT, experimental)"]
# scripts_manager.py 451-460 (setup_ui's create_script_ui): a script's args are p.script_args[args_from:args_to],
# after the selectable-script dropdown at index 0, each script's after the one before.
with gr.Blocks():
    script.args_from = 1
    script.args_to = script.args_from + len(script.ui(False))
    residual.args_from = script.args_to
    residual.args_to = residual.args_from + len(residual.ui(False))
RESIDUAL_OFF = [False, 0.95, 0.95, "all", 0.0, 1.0]


class Processing:
    """modules/processing_class.py StableDiffusionProcessing, the attributes the flow below touches:
    `sd_model` is a property returning shared.sd_model (654-656), `comment` (681-682), `is_hr_pass`."""

    def __init__(self, args, residual_args=RESIDUAL_OFF):
        self.scripts, self.script_args, self.per_script_args = runner, [0] + list(args) + list(residual_args), {}
        self.extra_generation_params, self.comments, self.is_hr_pass = {}, {}, False

    @property
    def sd_model(self):
        return shared.sd_model

    def comment(self, text):
        self.comments[text] = 1


def process_images(p, pipeline_call):
    """modules/processing.py process_images (138-236) and process_images_inner (436-587), one batch: the
    script calls in SD.Next's order, the pipeline call of processing_diffusers.process_base (186) in
    between, after_process_callback in the `finally`. process_base catches a RuntimeError (213-221)."""
    try:
        p.scripts.before_process(p)
        p.scripts.process(p)
        p.scripts.before_process_batch(p, batch_number=0, prompts=["a digit"], seeds=[0], subseeds=[0])
        p.scripts.process_batch(p, batch_number=0, prompts=["a digit"], seeds=[0], subseeds=[0])
        try:
            images = pipeline_call()
        except RuntimeError as error:
            print(f"Processing: {error}", file=sys.stderr)
            images = None
        p.scripts.postprocess_batch(p, images, batch_number=0)
        p.scripts.postprocess(p, types.SimpleNamespace(images=images))
        return images
    finally:
        script_callbacks.after_process_callback(p)


pipe = tiny_pipeline((diffusers, skip_tuning_diffusers), Path(tempfile.mkdtemp()), diffusers.EulerDiscreteScheduler())
shared.sd_model = pipe
hooks_while_sampling = []


def image(**kwargs):
    def on_step(pipeline, step, t, state):
        hooks_while_sampling.append(hooks_left(pipeline.unet))
        return state
    return pipe("a digit", num_inference_steps=4, height=16, width=16, guidance_scale=3.0, output_type="np",
                generator=torch.Generator().manual_seed(0), callback_on_step_end=on_step, **kwargs).images


def generate(args, call=image, residual_args=RESIDUAL_OFF, model=None):
    p = Processing(args, residual_args)
    images = process_images(p, call)
    return p, images, hooks_left(model or pipe.unet)


def diff(a, b):
    return None if a is None or b is None else float(abs(a - b).max())


ON = [True, 0.6, 0.3, 0.0, 1.0, ""]
plain = image()
with skip_tuning_diffusers.attach(pipe, 0.6, 0.3):
    reference = image()
with skip_tuning_diffusers.attach(pipe, 0.6, 0.3, start_percent=0.5):
    reference_late = image()
results = {"skips_hooked": len(skip_tuning_diffusers.skip_resnets(pipe.unet)[0])}

p, tuned, results["hooks_after_on"] = generate(ON)
results.update(on_vs_reference=diff(tuned, reference), on_vs_plain=diff(tuned, plain),
               infotext=p.extra_generation_params.get("Skip Tuning"), hooks_while_on=max(hooks_while_sampling))
_, off, results["hooks_after_off"] = generate([False, 0.6, 0.3, 0.0, 1.0, ""])
results["off_vs_plain"] = diff(off, plain)
_, late, _ = generate([True, 0.6, 0.3, 0.5, 1.0, ""])
results["late_vs_reference"] = diff(late, reference_late)

shared.opts.skip_tuning_in_hires_pass = False  # the setting that leaves the hires pass untuned


def hires_pass():
    p.is_hr_pass = True  # processing_diffusers.process_hires sets it around the hires pipeline call (247, 363)
    try:
        return image()
    finally:
        p.is_hr_pass = False


p = Processing(ON)
results["hires_off_vs_plain"] = diff(process_images(p, hires_pass), plain)
del shared.opts.skip_tuning_in_hires_pass


def failing():
    """The pipeline dies at its second step, with the hooks on (an out-of-memory error, say)."""
    def die(pipeline, step, t, state):
        hooks_while_sampling.append(hooks_left(pipeline.unet))
        raise RuntimeError("out of memory")
    return pipe("a digit", num_inference_steps=4, height=16, width=16, output_type="np", callback_on_step_end=die)


hooks_while_sampling.clear()
_, failed, results["hooks_after_failure"] = generate(ON, call=failing)
results["hooks_when_failing"] = hooks_while_sampling[-1]
_, bad, results["hooks_after_bad"] = generate([True, 1.0, 9.0, 0.0, 1.0, ""])
results["bad_vs_plain"] = diff(bad, plain)
after_all = image()
results["after_all_vs_plain"] = diff(after_all, plain)

# Residual Tuning on a diffusers FluxPipeline (SD.Next runs Flux through diffusers), and Skip Tuning refusing it.
from tiny_flux import sample_flux, tiny_flux_pipeline  # noqa: E402

flux = tiny_flux_pipeline(diffusers)
shared.sd_model = flux
hooks_on_flux = []


def flux_image():
    def on_step(pipeline, step, t, state):
        hooks_on_flux.append(hooks_left(pipeline.transformer))
        return state
    return sample_flux(flux, steps=4, callback_on_step_end=on_step)


flux_plain = flux_image()
with skip_tuning_diffusers.attach_residual(flux, 0.8, 0.9, "all", 0.2, 0.9):
    flux_reference = flux_image()
hooks_on_flux.clear()
p, flux_tuned, after = generate([False, 0.6, 0.3, 0.0, 1.0, ""], flux_image, [True, 0.8, 0.9, "all", 0.2, 0.9],
                                flux.transformer)
results["residual"] = dict(vs_reference=diff(flux_tuned, flux_reference), vs_plain=diff(flux_tuned, flux_plain),
                           infotext=p.extra_generation_params.get("Residual Tuning"), hooks_during=max(hooks_on_flux),
                           hooks_after=after, scheduler_restored="set_timesteps" not in vars(flux.scheduler))
p, skip_on_flux, _ = generate(ON, flux_image, model=flux.transformer)
results["skip_tuning_on_flux"] = dict(vs_plain=diff(skip_on_flux, flux_plain), comments=list(p.comments),
                                      infotext=p.extra_generation_params.get("Skip Tuning"))
print(json.dumps(results))
