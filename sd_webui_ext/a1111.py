"""AUTOMATIC1111: hooks on the loaded U-Net that exist only while this generation's `p.sample` runs."""
from skip_tuning_core import SkipTuningError

from .params import SkipParams, report_no_effect, report_unsupported, tell
from .sampling import wrap_sample
from .unet_hooks import attach, skip_widths


FOLLOWER = "skip_tuning_follower"  # on `p` while its `sample` runs


class SampledUnet:
    """This generation's hooks, on whichever U-Net samples. The refiner and a hires checkpoint load another
    model mid-generation (A1111 1.10.1 modules/sd_samplers_common.py apply_refiner, modules/processing.py
    before sample_hr_pass); when it is a new object, `follow()` moves the hooks onto it. `p.sd_model` is the
    loaded model (processing.py 261-263)."""

    def __init__(self, p, params: SkipParams, tunes_this_pass):
        self.p, self.params, self.tunes_this_pass = p, params, tunes_this_pass
        self.unet, self.handle = None, None

    def follow(self):
        unet = getattr(getattr(self.p.sd_model, "model", None), "diffusion_model", None)
        if unet is self.unet:
            return
        first = self.unet is None
        self.remove()
        self.unet = unet
        try:
            self.handle = attach(unet, self.params.rho_top, self.params.rho_bottom, self.params.start_percent,
                                 self.params.end_percent, self.params.block_rhos, condition=self.tunes_this_pass)
        except SkipTuningError as error:
            if first:
                raise
            tell(self.p, f"Skip Tuning: the refiner or hires checkpoint that took over was sampled without it: "
                         f"{error}")

    def remove(self):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def follow_the_sampled_unet(p) -> None:
    """At every denoiser step (script.py's `on_cfg_denoiser` callback): the hooks onto the U-Net that samples."""
    follower = getattr(p, FOLLOWER, None)
    if follower is not None:
        follower.follow()


def install_for_sampling(p, params: SkipParams, tunes_this_pass) -> bool:
    """Wrap this `p`'s own `sample` (txt2img runs its hires pass inside it) with hooks that exist only while it
    runs (sampling.py). `tunes_this_pass()` is asked at every U-Net call (txt2img's hires pass runs inside the
    same `sample`).
    """
    unet = getattr(getattr(p.sd_model, "model", None), "diffusion_model", None)
    if unet is None:
        report_no_effect(p, f"this WebUI's model ({type(p.sd_model).__name__}) is neither an ldm/sgm model with "
                            "a U-Net at model.diffusion_model nor a diffusers pipeline")
        return False
    try:
        skip_widths(unet)
    except SkipTuningError:
        report_unsupported(p, unet)
        return False
    def sample_with_skip_tuning(sample, *args, **kwargs):
        replacement = replaced_unet()
        if replacement is not None:
            name = getattr(getattr(replacement, "option", None), "label", type(replacement).__name__)
            report_no_effect(p, f"the U-Net is replaced by {name!r} (Settings, SD Unet), which runs its own "
                                "layers, not the ones Skip Tuning hooks")
            return sample(*args, **kwargs)
        follower = SampledUnet(p, params, tunes_this_pass)
        setattr(p, FOLLOWER, follower)
        try:
            follower.follow()
            return sample(*args, **kwargs)
        finally:
            follower.remove()
            vars(p).pop(FOLLOWER, None)
            # A WebUI without the on_cfg_denoiser callback cannot move the hooks: say so.
            if getattr(getattr(p.sd_model, "model", None), "diffusion_model", None) is not follower.unet:
                tell(p, "Skip Tuning tuned only the first model: the refiner or hires checkpoint that took "
                        "over during this generation was sampled without it.")

    wrap_sample(p, "Skip Tuning", sample_with_skip_tuning)
    return True


def fail_when_sampling(p, error: SkipTuningError) -> None:
    """Make this generation fail with `error`: the host reports an exception raised in a script's `process`
    to the console and carries on untuned, but one raised in `p.sample` fails the request, so the API caller
    gets the message (the field and its allowed range)."""
    def sample_refused(*args, **kwargs):
        raise error

    p.sample = sample_refused


def replaced_unet():
    """The U-Net A1111's `sd_unet` put in place of the loaded one (TensorRT and the like), or None.

    A1111 activates it after the scripts' `process` (modules/processing.py, `sd_unet.apply_unet()` after
    `p.scripts.process(p)`), so it is looked up when sampling starts."""
    try:
        from modules import sd_unet
    except ImportError:  # a WebUI without the mechanism
        return None
    return getattr(sd_unet, "current_unet", None)
