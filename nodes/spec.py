"""A host-neutral description of a node, so the classic and the V3 ComfyUI APIs share one definition."""
from dataclasses import dataclass
from typing import Any, Callable, Tuple


@dataclass(frozen=True)
class Field:
    """One input: its ComfyUI type (MODEL, FLOAT, INT, STRING, COMBO, ...) and widget settings."""

    name: str
    kind: str
    tooltip: str
    default: Any = None
    min: float = None
    max: float = None
    step: float = None
    options: Tuple[str, ...] = ()
    multiline: bool = False


@dataclass(frozen=True)
class Out:
    """One output; `is_list` makes ComfyUI run the downstream nodes once per item."""

    kind: str
    name: str
    tooltip: str
    is_list: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """A node: its stable id (saved workflows refer to it), its fields in widget order, and its function."""

    node_id: str
    display_name: str
    category: str
    description: str
    inputs: Tuple[Field, ...]
    outputs: Tuple[Out, ...]
    run: Callable[..., tuple]
