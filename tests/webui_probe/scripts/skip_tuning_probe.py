"""A test-only WebUI extension (tests/webui_apps.py places it beside Skip Tuning when asked): routes on the
WebUI's own FastAPI app that let a test compute the hand reference in the server's own process.

- `POST /skip-tuning-probe/hand?rho_top=..&rho_bottom=..[&max_side=..]`: from now on every U-Net that runs is
  scaled by hand (tests/hand_reference.py HandScaledEverywhere; `max_side`: only latents at most that wide).
- `DELETE /skip-tuning-probe/hand`: removes it; answers the output block count of each U-Net that ran.
- `GET /skip-tuning-probe/xyz`: the X/Y/Z axis labels in the order the API's `script_args` index them
  (scripts/xyz_grid.py ui(): `current_axis_options`), for txt2img and img2img.
"""
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for hand_reference
from hand_reference import HandScaledEverywhere  # noqa: E402
from modules import script_callbacks  # noqa: E402

hand = {}


def add_routes(demo, app):
    @app.post("/skip-tuning-probe/hand")
    def start(rho_top: float, rho_bottom: float, max_side: Optional[int] = None):
        stop()
        hand["now"] = HandScaledEverywhere(rho_top, rho_bottom, max_side).__enter__()
        return {"ok": True}

    @app.delete("/skip-tuning-probe/hand")
    def stop():
        everywhere = hand.pop("now", None)
        if everywhere is None:
            return {"unets": []}
        everywhere.__exit__()
        return {"unets": sorted(len(scaled.rhos) for scaled in everywhere.scaled.values())}  # a model unloaded since may have dropped its blocks

    @app.get("/skip-tuning-probe/xyz")
    def xyz_axes():
        from sd_webui_ext.xyz import find_xyz_module  # loaded by then, from the Skip Tuning extension
        module = find_xyz_module()
        return {tab: [o.label for o in module.axis_options if type(o) is module.AxisOption or o.is_img2img == is_img2img]
                for tab, is_img2img in (("txt2img", False), ("img2img", True))}


script_callbacks.on_app_started(add_routes)
