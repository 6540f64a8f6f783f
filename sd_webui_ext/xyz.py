"""X/Y/Z plot axes for Skip Tuning, added to the WebUI's own xyz_grid script the way it allows extensions."""
from modules import scripts

from .params import XYZ_OVERRIDES

AXES = (("rho_top", float), ("rho_bottom", float), ("start_percent", float), ("end_percent", float))
LABEL_PREFIX = "[Skip Tuning] "


def apply_override(name):
    """Sets the value on this cell's own `p` (a fresh dict, so cells never share one)."""
    def apply(p, value, values):
        setattr(p, XYZ_OVERRIDES, {**getattr(p, XYZ_OVERRIDES, {}), name: value})
    return apply


def find_xyz_module():
    """The loaded xyz_grid.py module, found through the WebUI's list of script classes."""
    for data in scripts.scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "scripts.xyz_grid") and hasattr(data, "module"):
            return data.module
    return None


def register_xyz_axes():
    xyz = find_xyz_module()
    if xyz is None or any(option.label.startswith(LABEL_PREFIX) for option in xyz.axis_options):
        return
    xyz.axis_options.extend(xyz.AxisOption(LABEL_PREFIX + name, kind, apply_override(name)) for name, kind in AXES)
