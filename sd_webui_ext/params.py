"""The WebUI scripts' settings: from UI/API arguments, X/Y/Z overrides and PNG infotext. No WebUI import.

Each settings class names its infotext entry (KEY), the short names its compact value uses (INFOTEXT_NAMES)
and the ones a pasted value must have (REQUIRED); the functions below serve both scripts through them."""
import logging
from dataclasses import dataclass, fields, replace
from typing import ClassVar

from skip_tuning_core import (DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipTuningError, check_percent, check_rho,
                               parse_numbers, unsupported_message)
from skip_tuning_core.residual import DEFAULT_RHO, check_blocks

XYZ_OVERRIDES = "skip_tuning_xyz"  # attribute of each X/Y/Z cell's own `p`
log = logging.getLogger("skip_tuning")


def check_switch_and_range(params) -> None:
    if not isinstance(params.enabled, bool):
        raise SkipTuningError(f"enabled must be true or false, got {params.enabled!r}")
    start = check_percent(params.start_percent, "start_percent")
    end = check_percent(params.end_percent, "end_percent")
    if start > end:
        raise SkipTuningError(f"start_percent ({start:g}) must not be after end_percent ({end:g})")


@dataclass(frozen=True)
class SkipParams:
    """What the accordion holds; the same meaning as the ComfyUI node's inputs."""

    KEY: ClassVar[str] = "Skip Tuning"
    INFOTEXT_NAMES: ClassVar[dict] = {"rho_top": "rho_top", "rho_bottom": "rho_bottom", "start": "start_percent",
                                      "end": "end_percent", "blocks": "block_rhos"}
    REQUIRED: ClassVar[tuple] = ("rho_top", "rho_bottom")

    enabled: bool = False
    rho_top: float = DEFAULT_RHO_TOP
    rho_bottom: float = DEFAULT_RHO_BOTTOM
    start_percent: float = 0.0
    end_percent: float = 1.0
    block_rhos: str = ""

    def validated(self) -> "SkipParams":
        """This, or a SkipTuningError naming the field and its allowed range."""
        check_switch_and_range(self)
        check_rho(self.rho_top, "rho_top")
        check_rho(self.rho_bottom, "rho_bottom")
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


@dataclass(frozen=True)
class ResidualParams:
    """The Residual Tuning accordion; the same meaning as the ComfyUI node's inputs."""

    KEY: ClassVar[str] = "Residual Tuning"
    INFOTEXT_NAMES: ClassVar[dict] = {"rho_first": "rho_first", "rho_last": "rho_last", "blocks": "blocks",
                                      "start": "start_percent", "end": "end_percent"}
    REQUIRED: ClassVar[tuple] = ("rho_first", "rho_last")

    enabled: bool = False
    rho_first: float = DEFAULT_RHO
    rho_last: float = DEFAULT_RHO
    blocks: str = "all"
    start_percent: float = 0.0
    end_percent: float = 1.0

    def validated(self) -> "ResidualParams":
        check_switch_and_range(self)
        check_rho(self.rho_first, "rho_first")
        check_rho(self.rho_last, "rho_last")
        check_blocks(self.blocks)
        return self

    def infotext(self) -> str:
        """E.g. 'rho_first=0.95; rho_last=0.95; blocks=all; start=0; end=1'."""
        return (f"rho_first={self.rho_first:g}; rho_last={self.rho_last:g}; blocks={self.blocks}; "
                f"start={self.start_percent:g}; end={self.end_percent:g}")


def arg_names(kind) -> tuple:
    """The script's arguments, in the order of its controls."""
    return tuple(field.name for field in fields(kind))


ARG_NAMES = arg_names(SkipParams)
INFOTEXT_KEY = SkipParams.KEY


def params_from_args(args, defaults=SkipParams()):
    """The script's arguments: positional in the order of `arg_names`, or one dict (API); missing ones keep
    `defaults` (whose class says which script's settings these are).

    A dict turns the script on unless it says `"enabled": false`.
    """
    kind = type(defaults)
    names = arg_names(kind)
    if len(args) >= 1 and isinstance(args[0], dict):
        unknown = set(args[0]) - set(names)
        if unknown:
            raise SkipTuningError(f"unknown {kind.KEY} argument(s) {sorted(unknown)}; allowed: {', '.join(names)}")
        values = {"enabled": True, **args[0]}
    else:
        if len(args) > len(names):
            raise SkipTuningError(f"{kind.KEY} takes at most {len(names)} arguments ({', '.join(names)}), "
                                  f"got {len(args)}")
        values = dict(zip(names, args))
    if type(values.get("enabled")) is int and values["enabled"] in (0, 1):  # JSON clients send 0/1
        values["enabled"] = bool(values["enabled"])
    return replace(defaults, **values).validated()


def with_xyz_overrides(params: SkipParams, p) -> SkipParams:
    """An X/Y/Z cell's own values win, and an axis of Skip Tuning values turns it on for that cell."""
    overrides = getattr(p, XYZ_OVERRIDES, None)
    if not overrides:
        return params
    return replace(params, enabled=True, **overrides).validated()


def params_from_infotext(text, kind=SkipParams):
    """Settings pasted from a PNG's parameters, or None (with a warning) when the value is malformed."""
    texts = {field.name for field in fields(kind) if field.type in (str, "str")}
    values = {}
    try:
        for part in str(text).split(";"):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in kind.INFOTEXT_NAMES or kind.INFOTEXT_NAMES[key] in values:
                raise SkipTuningError(f"unexpected part {part.strip()!r}")
            name = kind.INFOTEXT_NAMES[key]
            values[name] = ", ".join(value.split()) if name in texts else float(value)
        if not set(kind.REQUIRED) <= set(values):
            raise SkipTuningError(f"{' and '.join(kind.REQUIRED)} are required")
        return replace(kind(), enabled=True, **values).validated()
    except (SkipTuningError, ValueError) as error:
        log.warning("%s: ignoring the pasted value %r: %s", kind.KEY, text, error)
        return None


def paste_key(name: str, kind=SkipParams) -> str:
    """The parameter name of one control in A1111's paste machinery; "Send to img2img" copies a control
    only when this name, a string, is listed in the script's `paste_field_names`."""
    return f"{kind.KEY} {name}"


def infotext_value(name: str, kind=SkipParams):
    """An infotext-field function: this control's value in the script's compact entry of parsed infotext, or
    None. A1111's API (`Api.apply_infotext`, modules/api/api.py 363-430) reads a request's `infotext` through
    the script's `infotext_fields` alone and runs no `infotext_pasted` callback, so the compact value has to be
    read here too."""
    def value(params: dict):
        pasted = params_from_infotext(params[kind.KEY], kind) if kind.KEY in params else None
        return None if pasted is None else getattr(pasted, name)
    return value


def infotext_fields(controls, kind) -> list:
    """A script's `infotext_fields`: each control by name, for the UI's paste and "Send to" (which match fields
    by name), and by function, for the API's `infotext`; both read the same compact value."""
    names = arg_names(kind)
    return [(control, paste_key(name, kind)) for control, name in zip(controls, names)] + [
        (control, infotext_value(name, kind)) for control, name in zip(controls, names)]


def infotext_expander(kind):
    """An `infotext_pasted` callback: the script's one compact value becomes one entry per control (a PNG
    without it turns the accordion off; a malformed one leaves every control as it is)."""
    def expand(infotext: str, params: dict) -> None:
        if kind.KEY not in params:
            params[paste_key("enabled", kind)] = False
            return
        pasted = params_from_infotext(params[kind.KEY], kind)
        if pasted is not None:
            params.update({paste_key(name, kind): getattr(pasted, name) for name in arg_names(kind)})
    return expand


expand_infotext = infotext_expander(SkipParams)


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
