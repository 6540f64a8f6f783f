"""The WebUIs' HTTP API as the tests call it (`/sdapi/v1/...`): requests, the settings every test compares
under, and decoded images. Imports only requests, numpy and PIL, so it serves in every host's venv: in
tests/a1111_harness.py (A1111 in-process, .venv-a1111) and in tests/test_webui_apps.py (.venv)."""
import base64
import io
import json

import numpy as np
import requests
from PIL import Image

BASE = dict(prompt="a digit", steps=4, width=64, height=64, sampler_name="Euler", cfg_scale=3.0, seed=1,
            send_images=True, save_images=False)
ON = [True, 1.0, 0.5, 0.0, 1.0, ""]  # the script's args in order: enabled, rho_top, rho_bottom, start, end, blocks
HIRES = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", hr_second_pass_steps=2, denoising_strength=0.6)


def skip(args):
    return {"skip tuning": {"args": args}}


def pixels(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(np.int16)


def png_b64(image) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def post(api, route, **payload):
    """(HTTP status, the JSON body, the images decoded, the parsed `info`) of POST {api}/{route}."""
    response = requests.post(f"{api}/{route}", json=payload, timeout=600)
    body = response.json()
    images = [pixels(image) for image in body.get("images") or []]
    info = json.loads(body["info"]) if "info" in body else None
    return response.status_code, body, images, info


def max_diff(a, b):
    return int(np.abs(a - b).max())
