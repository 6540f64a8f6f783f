"""Skip Tuning Sweep: one model in, one patched model per rho value out, for a labelled A/B in one run."""
from ..skip_tuning_core import SkipTuningError, check_rho, parse_numbers, skip_tuned
from .skip_tuning import CATEGORY, MODEL_INPUT, RAMP_INPUTS, RANGE_INPUTS, SEARCH_ALIASES

MAX_VALUES = 16
SWEPT = ("rho_bottom", "rho_top")


class SkipTuningSweep:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "sweep": (list(SWEPT), {"default": "rho_bottom",
                                    "tooltip": "Which rho the values replace; the other keeps its widget value."}),
            "values": ("STRING", {"default": "1.0, 0.9, 0.8, 0.7",
                                  "tooltip": f"Comma-separated rho values, one patched model each (at most "
                                             f"{MAX_VALUES}). Include 1.0 for the unpatched reference."}),
            **RAMP_INPUTS, **RANGE_INPUTS,
        }}

    RETURN_TYPES = ("MODEL", "STRING")
    RETURN_NAMES = ("models", "labels")
    OUTPUT_TOOLTIPS = ("One patched model per value.", "A label per model, such as 'rho_bottom_0.8'.")
    OUTPUT_IS_LIST = (True, True)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    SEARCH_ALIASES = SEARCH_ALIASES + ["A/B", "compare", "xy plot"]
    DESCRIPTION = ("Outputs one Skip Tuning model per value (a list): a KSampler fed with it renders every value "
                   "with the same seed in one run. The labels fit a SaveImage filename_prefix.")

    def apply(self, model, sweep, values, rho_top, rho_bottom, start_percent, end_percent):
        if sweep not in SWEPT:
            raise SkipTuningError(f"sweep must be one of {', '.join(SWEPT)}, got {sweep!r}")
        numbers = [check_rho(value, f"values[{i}]") for i, value in enumerate(parse_numbers(values, "values"))]
        if len(numbers) > MAX_VALUES:
            raise SkipTuningError(f"values has {len(numbers)} entries; at most {MAX_VALUES} are allowed")
        models, labels = [], []
        for value in numbers:
            settings = {"rho_top": rho_top, "rho_bottom": rho_bottom, sweep: value}
            models.append(skip_tuned(model, start_percent=start_percent, end_percent=end_percent, **settings))
            labels.append(f"{sweep}_{value:g}")
        return models, labels
