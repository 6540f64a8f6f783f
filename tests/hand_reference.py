"""The hand reference the WebUI tests compare a tuned image with: each output block's skip scaled at another
hook point than the product's (the output block's input, cat([h, skip])), with torch hooks only.

Used inside the hosts' own processes: by tests/a1111_harness.py (A1111 1.10.1 in-process) and by the probe
extension tests/webui_probe/ (every WebUI started as an application by tests/webui_apps.py). It imports only
torch, so it runs in every host's venv. It works on every U-Net that keeps `input_blocks` and `output_blocks`
and concatenates the skip last: ldm's and sgm's (A1111, with its `th.cat` hijack), Forge main's
`backend/nn/unet.py` and the forks' `ldm_patched/ldm/modules/diffusionmodules/openaimodel.py`
(`h = torch.cat([h, hsp], dim=1)` before `module(h, emb, ...)`).
"""
import torch


def ramp(rho_top, rho_bottom, n=12):
    """rho_j of the README's formula, deepest output block (j = 0) first."""
    return [rho_bottom + (rho_top - rho_bottom) * j / (n - 1) for j in range(n)]


def is_unet(module) -> bool:
    return isinstance(getattr(module, "input_blocks", None), torch.nn.ModuleList) and isinstance(
        getattr(module, "output_blocks", None), torch.nn.ModuleList)


class HandScaled:
    """Skip j of `model` scaled by rhos[j], its width read off what the input block emitted in the same call;
    only for the first `calls` U-Net calls (all when None) and only for latents at most `max_side` wide (all
    when None: a hires pass samples a wider latent than the first pass)."""

    def __init__(self, rhos, model, calls=None, max_side=None):
        self.rhos, self.model, self.calls, self.max_side = rhos, model, calls, max_side
        self.count, self.widths, self.handles, self.active = 0, [], [], False

    def __enter__(self):
        def start(module, args, kwargs):
            x = args[0] if args else kwargs["x"]
            self.count += 1
            self.active = ((self.calls is None or self.count <= self.calls)
                           and (self.max_side is None or x.shape[-1] <= self.max_side))
            self.widths.clear()
        self.handles.append(self.model.register_forward_pre_hook(start, with_kwargs=True))
        # On a block's last and first layers, not the block: reForge's and Forge Classic's U-Net runs each
        # block's layers through forward_timestep_embed without calling the block itself (ldm_patched/ldm/
        # modules/diffusionmodules/openaimodel.py, reForge 34-61, 896 and 931); every block is a
        # TimestepEmbedSequential, whose output is its last layer's and whose input its first layer's.
        for block in self.model.input_blocks:
            self.handles.append(block[-1].register_forward_hook(lambda m, a, out: self.widths.append(out.shape[1])))
        for j, block in enumerate(self.model.output_blocks):
            def scale(module, args, j=j):
                if self.active:
                    x = args[0].clone()
                    x[:, -self.widths[-1 - j]:] *= self.rhos[j]
                    return (x,) + tuple(args[1:])
            self.handles.append(block[0].register_forward_pre_hook(scale))
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


class HandScaledEverywhere:
    """HandScaled on every U-Net that runs while this is entered (a refiner's or a hires checkpoint's too), with
    the ramp for its own number of output blocks; a global forward pre-hook finds each one at its first call.
    `scaled` maps each U-Net that ran to its HandScaled."""

    def __init__(self, rho_top, rho_bottom, max_side=None):
        self.rho_top, self.rho_bottom, self.max_side, self.scaled = rho_top, rho_bottom, max_side, {}

    def __enter__(self):
        def find(module, args):
            if module not in self.scaled and is_unet(module):
                rhos = ramp(self.rho_top, self.rho_bottom, len(module.output_blocks))
                scaled = HandScaled(rhos, model=module, max_side=self.max_side).__enter__()
                self.scaled[module] = scaled
                # The U-Net's own pre-hook was registered after this call began: count this call as it would.
                scaled.count, scaled.active = 1, self.max_side is None or args[0].shape[-1] <= self.max_side
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(find)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        for scaled in self.scaled.values():
            scaled.__exit__()
