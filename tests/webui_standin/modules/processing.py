"""Mirrors A1111 modules/processing.py (and Forge's) call order for txt2img with an optional hires pass.

`process_images`: scripts.process -> per batch p.sample(...) -> scripts.postprocess; inside `sample`,
process_before_every_sampling runs before the first pass and again before the hires pass
(`sample_hr_pass` sets `is_hr_pass`; Forge resets `forge_objects` first). The samplers here are small
but real: A1111's runs the ldm U-Net on discrete timesteps, Forge's runs ComfyUI's real sampling loop.
"""
import copy

import torch

TIMESTEPS = [999, 799, 599, 399, 199]


class Processed:
    def __init__(self, p, images):
        self.images = images
        self.infotexts = [dict(p.extra_generation_params)]


class StableDiffusionProcessingTxt2Img:
    def __init__(self, sd_model, scripts, script_args, enable_hr=False, n_iter=1, seed=0):
        self.sd_model = sd_model
        self.scripts = scripts
        self.script_args = list(script_args)
        self.enable_hr = enable_hr
        self.n_iter = n_iter
        self.seed = seed
        self.is_hr_pass = False
        self.extra_generation_params = {}
        self.comments = {}

    def comment(self, text):
        self.comments[text] = 1

    def noise(self, shape):
        return torch.randn(shape, generator=torch.Generator().manual_seed(self.seed))

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.noise(self.sd_model.latent_shape)
        self.scripts.process_before_every_sampling(self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sd_model.run_sampler(self, x, conditioning, TIMESTEPS)
        if not self.enable_hr:
            return samples
        return self.sample_hr_pass(samples, None, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        self.is_hr_pass = True
        if hasattr(self.sd_model, "forge_objects"):
            self.sd_model.forge_objects = self.sd_model.forge_objects_original.shallow_copy()
        x = samples + 0.5 * self.noise(samples.shape)
        self.scripts.process_before_every_sampling(self, x=x, noise=x, c=None, uc=None)
        return self.sd_model.run_sampler(self, x, None, TIMESTEPS[2:])


def process_images(p):
    p.scripts.process(p)
    images = []
    for n in range(p.n_iter):
        if hasattr(p.sd_model, "forge_objects_original"):  # Forge resets its patchers for every batch
            p.sd_model.forge_objects = p.sd_model.forge_objects_original.shallow_copy()
        images.append(p.sample(conditioning=None, unconditional_conditioning=None, seeds=[p.seed + n],
                               subseeds=[0], subseed_strength=0.0, prompts=[""]))
    processed = Processed(p, images)
    p.scripts.postprocess(p, processed)
    return processed


class ForgeObjects:
    """Mirrors Forge's ForgeObjects: the patchers a generation may clone and replace."""

    def __init__(self, unet):
        self.unet = unet

    def shallow_copy(self):
        return copy.copy(self)
