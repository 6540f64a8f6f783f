"""The WebUI script's settings: from UI/API arguments, X/Y/Z overrides and PNG infotext. No WebUI import."""
import logging
from dataclasses import dataclass, fields, replace

from skip_tuning_core import (DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipTuningError, check_percent, check_rho,
                               parse_numbers, unsupported_message)

INFOTEXT_KEY = "Skip Tuning"
XYZ_OVERRIDES = "skip_tuning_xyz"  # attribute of each X/Y/Z cell's own `p`
log = logging.getLogger("skip_tuning")


@dataclass(frozen=True)
class SkipParams:
    """What the accordion holds; the same meaning as the ComfyUI node's inputs."""

    enabled: bool = False
    rho_top: float = DEFAULT_RHO_TOP
    rho_bottom: float = DEFAULT_RHO_BOTTOM
    start_percent: float = 0.0
    end_percent: float = 1.0
    block_rhos: str = ""

    def validated(self) -> "SkipParams":
        """This, or a SkipTuningError naming the field and its allowed range."""
        if not isinstance(self.enabled, bool):
            raise SkipTuningError(f"enabled must be true or false, got {self.enabled!r}")
        check_rho(self.rho_top, "rho_top")
        check_rho(self.rho_bottom, "rho_bottom")
        start = check_percent(self.start_percent, "start_percent")
        end = check_percent(self.end_percent, "end_percent")
        if start > end:
            raise SkipTuningError(f"start_percent ({start:g}) must not be after end_percent ({end:g})")
        if not isinstance(self.block_rhos, str):
            raise SkipTuningError(f"block_rhos must be text such as '0.8, 0.85, ...' or empty, got {self.block_rhos!r}")
        if self.block_rhos.strip():
            for i, value in enumerate(parse_numbers(self.block_rhos, "block_rhos")):
                check_rho(value, f"block_rhos[{i}]")
        return self

    def infotext(self) -> str:
        """The compact PNG-infotext value, e.g. 'rho_top=1; rho_bottom=0.8; start=0; end=1'."""
        text = (f"rho_top={self.rho_top:g}; rho_bottom={self.rho_bottom:g}; "
                f"start={self.start_percent:g}; end={self.end_percent:g}")
        if self.block_rhos.strip():
            text += "; blocks=" + " ".join(f"{v:g}" for v in parse_numbers(self.block_rhos, "block_rhos"))
        return text


ARG_NAMES = tuple(field.name for field in fields(SkipParams))
INFOTEXT_NAMES = {"rho_top": "rho_top", "rho_bottom": "rho_bottom", "start": "start_percent",
                  "end": "end_percent", "blocks": "block_rhos"}


def params_from_args(args, defaults: SkipParams = SkipParams()) -> SkipParams:
    """The script's arguments: positional in ARG_NAMES order, or one dict (API); missing ones keep `defaults`.

    A dict turns Skip Tuning on unless it says `"enabled": false`.
    """
    if len(args) >= 1 and isinstance(args[0], dict):
        unknown = set(args[0]) - set(ARG_NAMES)
        if unknown:
            raise SkipTuningError(f"unknown Skip Tuning argument(s) {sorted(unknown)}; allowed: {', '.join(ARG_NAMES)}")
        values = {"enabled": True, **args[0]}
    else:
        if len(args) > len(ARG_NAMES):
            raise SkipTuningError(f"Skip Tuning takes at most {len(ARG_NAMES)} arguments ({', '.join(ARG_NAMES)}), "
                                  f"got {len(args)}")
        values = dict(zip(ARG_NAMES, args))
    if type(values.get("enabled")) is int and values["enabled"] in (0, 1):  # JSON clients send 0/1
        values["enabled"] = bool(values["enabled"])
    return replace(defaults, **values).validated()


def with_xyz_overrides(params: SkipParams, p) -> SkipParams:
    """An X/Y/Z cell's own values win, and an axis of Skip Tuning values turns it on for that cell."""
    overrides = getattr(p, XYZ_OVERRIDES, None)
    if not overrides:
        return params
    return replace(params, enabled=True, **overrides).validated()


def params_from_infotext(text):
    """Settings pasted from a PNG's parameters, or None (with a warning) when the value is malformed."""
    values = {}
    try:
        for part in str(text).split(";"):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in INFOTEXT_NAMES or INFOTEXT_NAMES[key] in values:
                raise SkipTuningError(f"unexpected part {part.strip()!r}")
            name = INFOTEXT_NAMES[key]
            values[name] = ", ".join(value.split()) if name == "block_rhos" else float(value)
        if not {"rho_top", "rho_bottom"} <= set(values):
            raise SkipTuningError("rho_top and rho_bottom are required")
        return replace(SkipParams(), enabled=True, **values).validated()
    except (SkipTuningError, ValueError) as error:
        log.warning("Skip Tuning: ignoring the pasted value %r: %s", text, error)
        return None


def paste_key(name: str) -> str:
    """The parameter name of one control in A1111's paste machinery; "Send to img2img" copies a control
    only when this name, a string, is listed in the script's `paste_field_names`."""
    return f"{INFOTEXT_KEY} {name}"


def infotext_value(name: str):
    """An infotext-field function: this control's value in the compact "Skip Tuning" entry of parsed infotext,
    or None. A1111's API (`Api.apply_infotext`, modules/api/api.py 363-430) reads a request's `infotext` through
    the script's `infotext_fields` alone and runs no `infotext_pasted` callback, so the compact value has to be
    read here too."""
    def value(params: dict):
        pasted = params_from_infotext(params[INFOTEXT_KEY]) if INFOTEXT_KEY in params else None
        return None if pasted is None else getattr(pasted, name)
    return value


def expand_infotext(infotext: str, params: dict) -> None:
    """An `infotext_pasted` callback: the one compact "Skip Tuning" value becomes one entry per control
    (a PNG without it turns the accordion off; a malformed one leaves every control as it is)."""
    if INFOTEXT_KEY not in params:
        params[paste_key("enabled")] = False
        return
    pasted = params_from_infotext(params[INFOTEXT_KEY])
    if pasted is not None:
        params.update({paste_key(name): getattr(pasted, name) for name in ARG_NAMES})


def tell(p, message: str) -> None:
    """In the console and in the image's comment (the infotext), where the person who generated it sees it."""
    log.warning(message)
    if callable(getattr(p, "comment", None)):
        p.comment(message)


def report_no_effect(p, why: str) -> None:
    tell(p, f"Skip Tuning had no effect: {why}. This image was generated without it.")


def report_unsupported(p, model) -> None:
    """The model has no skips to tune; generation goes on."""
    tell(p, f"Skip Tuning: {unsupported_message(type(model).__name__)} This image was generated without it.")
