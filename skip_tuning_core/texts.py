"""The help sentences every host shows, in one place: node tooltips, WebUI hints, docs."""
from .presets import load_findings

BLOCK_COUNT = ("as many as the model has output blocks, counted on the model itself (SDXL base: 9; SD1.x, "
               "SD2.x, SVD and the SDXL refiner: 12; KOALA: 6)")

# Only ComfyUI tunes HunyuanDiT (through its model patcher); the WebUIs show BLOCK_COUNT alone.
DIT_BLOCK_COUNT = "HunyuanDiT: 19, one per skip its second-half blocks pop"

SAMPLER_NOTE = "The effect depends on the sampler: compare with and without on your own seeds."

CONTROLNET_NOTE = ("A ControlNet's residual is added to a skip before the skip is scaled, so rho scales that "
                   "residual too.")

HELP = {
    "rho_top": "Scale of the skip connection nearest the input (the last output block). Usually 1.0.",
    "rho_bottom": "Scale of the deepest skip connection (the first output block); the blocks in between are "
                  "interpolated linearly. Below 1 weakens the skips (the paper uses 0.5-0.9 for few-step ODE "
                  "samplers); above 1 strengthens them. " + SAMPLER_NOTE,
    "start_percent": "Where in the denoising run the scaling starts: 0 = the first step (pure noise), 1 = the end.",
    "end_percent": "Where in the denoising run the scaling ends: 1 = the last step.",
    "block_rhos": f"Optional: one rho per output block, deepest first, {BLOCK_COUNT}. Empty uses the "
                  "rho_top/rho_bottom ramp.",
    "ranges": "One range of the denoising run per line (0 = pure noise, 1 = end): 'start-end' uses the values "
              "above; 'start-end: top, bottom' gives that range its own ramp; 'start-end: r0, r1, ...' its own "
              "per-block list. Where ranges overlap, the first listed wins; steps outside every range are not "
              "scaled. '#' starts a comment.",
}

# What the lab measured on its distilled (LCM) model, as its quality run wrote it: the question few-step users ask.
DISTILLED_FINDING = load_findings().get("distilled", "")

DESCRIPTION = ("Skip Tuning (Ma et al., ICML 2024): scales the long skip connections of a U-Net (or of HunyuanDiT, "
               "a transformer that keeps them), rho_bottom for the deepest "
               "and rho_top for the shallowest, linearly in between. Training-free, no extra compute. "
               + SAMPLER_NOTE + " " + CONTROLNET_NOTE + (" " + DISTILLED_FINDING if DISTILLED_FINDING else ""))

RESIDUAL_RHO = ("Scale of the identity branch of the {} chosen block: its output becomes rho * input + branch, "
                "linear in depth between the first and the last. Below 1 weakens the residual stream.")
RESIDUAL_HELP = {
    "model": "A Flux-family transformer (Flux, Chroma). It is cloned, never changed.",
    "rho_first": RESIDUAL_RHO.format("first"),
    "rho_last": RESIDUAL_RHO.format("last"),
    "blocks": "Which blocks: all, only the double-stream ones or only the single-stream ones.",
    "start_percent": HELP["start_percent"],
    "end_percent": HELP["end_percent"],
}
RESIDUAL_DESCRIPTION = ("scales each transformer block's identity branch (output = rho * input + branch), the "
                        "counterpart of Skip Tuning the Skip Tuning blog suggests for DiTs without long skips. "
                        "Measured only on the pack's small digits DiT, not on a large model: compare on your own "
                        "seeds. " + load_findings().get("residual", ""))
