"""What tests/test_webui_apps.py measures through HTTP on a WebUI started as an application (tests/webui_apps.py),
with the probe extension (tests/webui_probe) computing the hand reference in the server's own process. Each
comparison is the max abs difference of two 8-bit images."""
import json

import requests

from webui_api import BASE, HIRES, ON, max_diff, png_b64, post, skip

INFOTEXT_LINE = "Skip Tuning: rho_top=1; rho_bottom=0.5; start=0; end=1"
BAD_MESSAGE = "rho_bottom must be a finite number from 0 to 3, got 5.0"


def xyz_script_args(host, x_type, values):
    """X/Y/Z's script args with only the X axis set. reForge's run() takes three more after draw_legend
    (draw_individual_labels, skip_grid, items_per_grid: reForge scripts/xyz_grid.py 622-624); A1111 1.10.1,
    Forge main and Forge Classic (extensions-builtin/xyz/scripts/xyz_grid.py 414-434) keep A1111's order."""
    extra = [False, False, 0] if host == "reforge" else []
    return [x_type, values, [], 0, "", [], 0, "", [], True, *extra, True, False, False, False, False, False, 0, False]


class Client:
    def __init__(self, app):
        self.app, self.probe = app, f"{app.url}/skip-tuning-probe"
        # Forge main's API fails a hires request without it (HTTP 500 TypeError; ../shared/notes/hosts.md).
        self.hires = dict(HIRES, hr_additional_modules=["Use same choices"]) if app.host == "forge" else HIRES

    def call(self, route, **payload):
        return post(self.app.api, route, **payload)

    def image(self, route, **payload):
        status, body, images, _ = self.call(route, **payload)
        assert status == 200 and images, (status, str(body)[:2000])
        return images

    def reference(self, route, rho_top=1.0, rho_bottom=0.5, max_side=None, **payload):
        """The images and the output block counts of the U-Nets that ran, every one scaled by hand."""
        params = {"rho_top": rho_top, "rho_bottom": rho_bottom, **({"max_side": max_side} if max_side else {})}
        requests.post(f"{self.probe}/hand", params=params, timeout=30).raise_for_status()
        try:
            images = self.image(route, **payload)
        finally:
            unets = requests.delete(f"{self.probe}/hand", timeout=30).json()["unets"]
        return images, unets

    def warm_up(self, route, **payload):
        """The same request once, untuned, before the compared ones: img2img depends on the request before it
        (Forge main's VAE encoder samples with the global torch RNG that request left, ../shared/notes/hosts.md;
        in A1111 a Loopback run after a plain img2img differs by up to 22/255), and the same request leaves
        the same state."""
        self.image(route, **payload)


def measure_xyz(c, host, off, reference) -> dict:
    """X/Y/Z with a rho_bottom axis, the accordion closed: the grid and a cell per value."""
    axes = requests.get(f"{c.probe}/xyz", timeout=30).json()["txt2img"]
    if "[Skip Tuning] rho_bottom" not in axes:
        return dict(status=None, images=0)
    status, _, images, _ = c.call("txt2img", **BASE, script_name="x/y/z plot",
                                  script_args=xyz_script_args(host, axes.index("[Skip Tuning] rho_bottom"), "1, 0.5"))
    return dict(status=status, images=len(images), rho1_vs_off=max_diff(images[1], off) if len(images) == 3 else None,
                rho05_vs_reference=max_diff(images[2], reference) if len(images) == 3 else None)


def measure_api_only(app) -> dict:
    """API-only mode (`--nowebui`): X/Y/Z's axes are taken before on_before_ui callbacks run."""
    c = Client(app)
    (off,) = c.image("txt2img", **BASE)
    (reference,), _ = c.reference("txt2img", **BASE)
    return {"xyz": measure_xyz(c, app.host, off, reference)}


def measure(app) -> dict:
    c, host, results = Client(app), app.host, {}
    axes = requests.get(f"{c.probe}/xyz", timeout=30).json()
    results["xyz_axes"] = [label for label in axes["txt2img"] if label.startswith("[Skip Tuning]")]

    # --- txt2img: positional args, a dict, off ----------------------------------------------------------
    (off,) = c.image("txt2img", **BASE)
    (reference,), unets = c.reference("txt2img", **BASE)
    status, _, (tuned,), info = c.call("txt2img", **BASE, alwayson_scripts=skip(ON))
    results["txt2img"] = dict(status=status, vs_reference=max_diff(tuned, reference), vs_off=max_diff(tuned, off),
                              unets=unets, infotext=INFOTEXT_LINE in info["infotexts"][0])
    (as_dict,) = c.image("txt2img", **BASE, alwayson_scripts=skip([{"rho_top": 1.0, "rho_bottom": 0.5}]))
    _, _, (dict_off,), info_dict_off = c.call("txt2img", **BASE, alwayson_scripts=skip([{"enabled": False, "rho_bottom": 0.5}]))
    _, _, (args_off,), info_args_off = c.call("txt2img", **BASE, alwayson_scripts=skip([False] + ON[1:]))
    results["api_dict"] = dict(vs_reference=max_diff(as_dict, reference), disabled_vs_off=max_diff(dict_off, off),
                               disabled_args_vs_off=max_diff(args_off, off),
                               disabled_infotext=any("Skip Tuning" in i["infotexts"][0] for i in (info_dict_off, info_args_off)))

    # --- the request's `infotext` field -------------------------------------------------------------------
    status, body, images, info = c.call("txt2img", **BASE, infotext=f"a digit\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64, {INFOTEXT_LINE}")
    results["api_infotext"] = dict(status=status, error=str(body.get("error")), message=str(body.get("message"))[:300],
                                   vs_reference=max_diff(images[0], reference) if images else None,
                                   vs_off=max_diff(images[0], off) if images else None)

    # --- a bad value: the request fails, or (where the fork swallows the error) the console says so ------
    before = len(app.console())
    status, body, images, _ = c.call("txt2img", **BASE, alwayson_scripts=skip([{"rho_bottom": 5}]))
    console = app.console()[before:]
    results["api_bad"] = dict(status=status, error=str(body.get("error")), message=str(body.get("message")),
                              errors=str(body.get("errors")), images=len(images), in_console=BAD_MESSAGE in console,
                              swallowed="Error running process" in console)

    # --- Residual Tuning on this U-Net checkpoint: made without it, saying why; a bad value fails ---------
    residual = {"Residual Tuning (DiT, experimental)": {"args": [{"rho_first": 0.9}]}}
    before = len(app.console())
    status, _, images, info = c.call("txt2img", **BASE, alwayson_scripts=residual)
    console = app.console()[before:]
    bad_status, bad_body, _, _ = c.call("txt2img", **BASE, alwayson_scripts={
        "Residual Tuning (DiT, experimental)": {"args": [{"rho_first": 5}]}})
    results["residual_on_unet"] = dict(status=status, vs_off=max_diff(images[0], off) if images else None,
                                       infotext=info["infotexts"][0] if info else "",
                                       in_console="has no double- and single-stream blocks" in console,
                                       bad_status=bad_status, bad_body=json.dumps(bad_body))

    # --- img2img and Loopback (3 loops on the same p) --------------------------------------------------
    i2i = dict(BASE, init_images=[png_b64(off)], denoising_strength=0.6)
    c.warm_up("img2img", **i2i)
    i2i_reference, _ = c.reference("img2img", **i2i)
    i2i_tuned = c.image("img2img", **i2i, alwayson_scripts=skip(ON))
    i2i_dict = c.image("img2img", **i2i, alwayson_scripts=skip([{"rho_top": 1.0, "rho_bottom": 0.5}]))
    i2i_off = c.image("img2img", **i2i)
    results["img2img"] = dict(vs_reference=max_diff(i2i_tuned[0], i2i_reference[0]), vs_off=max_diff(i2i_tuned[0], i2i_off[0]),
                              dict_vs_reference=max_diff(i2i_dict[0], i2i_reference[0]))
    loop = dict(i2i, script_name="loopback", script_args=[3, 0.6, "Linear", "None"])
    c.warm_up("img2img", **loop)
    loop_reference, _ = c.reference("img2img", **loop)
    loop_tuned = c.image("img2img", **loop, alwayson_scripts=skip(ON))
    results["loopback"] = dict(images=len(loop_tuned), vs_reference=[max_diff(a, b) for a, b in zip(loop_tuned, loop_reference)])

    # --- hires: tuned in both passes by default; the setting leaves the hires pass out -----------------
    hr = dict(BASE, **c.hires)
    (hr_reference,), _ = c.reference("txt2img", **hr)
    # The first pass samples an 8-wide latent (64 px), the hires pass a 16-wide one.
    (hr_first_only,), _ = c.reference("txt2img", max_side=BASE["width"] // 8, **hr)
    (hr_tuned,) = c.image("txt2img", **hr, alwayson_scripts=skip(ON))
    (hr_setting_off,) = c.image("txt2img", **hr, alwayson_scripts=skip(ON),
                                override_settings={"skip_tuning_in_hires_pass": False})
    results["hires"] = dict(vs_reference=max_diff(hr_tuned, hr_reference), setting_off_vs_first_only=max_diff(hr_setting_off, hr_first_only),
                            setting_off_vs_tuned=max_diff(hr_setting_off, hr_tuned))

    # --- X/Y/Z with a rho_bottom axis, the accordion closed ---------------------------------------------
    results["xyz"] = measure_xyz(c, host, off, reference)

    # --- another checkpoint mid-generation: the refiner and a hires checkpoint ---------------------------
    for case, fields in (("refiner", dict(refiner_checkpoint="other.safetensors", refiner_switch_at=0.5)),
                         ("hires_checkpoint", dict(c.hires, hr_checkpoint_name="other.safetensors"))):
        (switched_reference,), unets = c.reference("txt2img", **BASE, **fields)
        _, _, (switched,), info = c.call("txt2img", **BASE, **fields, alwayson_scripts=skip(ON))
        results[case] = dict(unets=unets, vs_reference=max_diff(switched, switched_reference),
                             infotext=INFOTEXT_LINE in info["infotexts"][0])
    return results
