"""Skip Tuning Sweep: one model in, one patched model per rho value out, for a labelled A/B in one run."""
from ..skip_tuning_core import SkipTuningError, check_rho, parse_numbers, skip_tuned
from .skip_tuning import END_PERCENT, MODEL_IN, RHO_BOTTOM, RHO_TOP, START_PERCENT
from .spec import Field, NodeSpec, Out

MAX_VALUES = 16

SWEEP = Field("sweep", "COMBO", "Which rho the values replace; the other keeps its widget value.",
              default="rho_bottom", options=("rho_bottom", "rho_top"))
VALUES = Field("values", "STRING", f"Comma-separated rho values, one patched model each (at most {MAX_VALUES}). "
               "Include 1.0 for the unpatched reference.", default="1.0, 0.9, 0.8, 0.7")


def apply(model, sweep, values, rho_top, rho_bottom, start_percent, end_percent):
    """One patched clone and one label per value of the swept rho."""
    if sweep not in SWEEP.options:
        raise SkipTuningError(f"sweep must be one of {', '.join(SWEEP.options)}, got {sweep!r}")
    numbers = [check_rho(value, f"values[{i}]") for i, value in enumerate(parse_numbers(values, "values"))]
    if len(numbers) > MAX_VALUES:
        raise SkipTuningError(f"values has {len(numbers)} entries; at most {MAX_VALUES} are allowed")
    models, labels = [], []
    for value in numbers:
        settings = {"rho_top": rho_top, "rho_bottom": rho_bottom, sweep: value}
        models.append(skip_tuned(model, start_percent=start_percent, end_percent=end_percent, **settings))
        labels.append(f"{sweep}_{value:g}")
    return models, labels


NODE = NodeSpec(
    node_id="SkipTuningSweep",
    display_name="Skip Tuning Sweep",
    category="model_patches/unet",
    description="Outputs one Skip Tuning model per value (a list): a KSampler fed with it renders every value "
                "with the same seed in one run. The labels fit a SaveImage filename_prefix.",
    inputs=(MODEL_IN, SWEEP, VALUES, RHO_TOP, RHO_BOTTOM, START_PERCENT, END_PERCENT),
    outputs=(Out("MODEL", "models", "One patched model per value.", is_list=True),
             Out("STRING", "labels", "A label per model, such as 'rho_bottom_0.8'.", is_list=True)),
    run=apply,
)
