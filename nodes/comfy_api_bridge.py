"""Turn a NodeSpec into a ComfyUI node class: V3 (`comfy_api.latest`, ComfyUI >= 0.3.48) or classic."""
from .spec import NodeSpec

try:
    from comfy_api.latest import ComfyExtension, io
except ImportError:  # older ComfyUI: the classic API is all there is
    ComfyExtension = io = None

HAS_V3 = io is not None


def classic_input(field):
    """The classic `INPUT_TYPES` entry of one field."""
    if field.kind == "COMBO":
        return (list(field.options), {"default": field.default, "tooltip": field.tooltip})
    options = {"tooltip": field.tooltip}
    for key in ("default", "min", "max", "step"):
        if getattr(field, key) is not None:
            options[key] = getattr(field, key)
    if field.multiline:
        options["multiline"] = True
    return (field.kind, options)


def classic_node(spec: NodeSpec) -> type:
    """A classic node class (`INPUT_TYPES`, `RETURN_TYPES`, `FUNCTION`) for this spec."""

    def input_types(cls):
        return {"required": {field.name: classic_input(field) for field in spec.inputs}}

    def run(self, **kwargs):
        return spec.run(**kwargs)

    return type(spec.node_id, (), {
        "INPUT_TYPES": classmethod(input_types),
        "RETURN_TYPES": tuple(out.kind for out in spec.outputs),
        "RETURN_NAMES": tuple(out.name for out in spec.outputs),
        "OUTPUT_TOOLTIPS": tuple(out.tooltip for out in spec.outputs),
        "OUTPUT_IS_LIST": tuple(out.is_list for out in spec.outputs),
        "FUNCTION": "run",
        "CATEGORY": spec.category,
        "DESCRIPTION": spec.description,
        "run": run,
    })


def v3_input(field):
    """The `io` input object of one field."""
    if field.kind == "FLOAT":
        return io.Float.Input(field.name, tooltip=field.tooltip, default=field.default,
                              min=field.min, max=field.max, step=field.step)
    if field.kind == "INT":
        return io.Int.Input(field.name, tooltip=field.tooltip, default=field.default,
                            min=field.min, max=field.max, step=field.step)
    if field.kind == "STRING":
        return io.String.Input(field.name, tooltip=field.tooltip, default=field.default, multiline=field.multiline)
    if field.kind == "COMBO":
        return io.Combo.Input(field.name, options=list(field.options), tooltip=field.tooltip, default=field.default)
    return io.Custom(field.kind).Input(field.name, tooltip=field.tooltip)


def v3_node(spec: NodeSpec) -> type:
    """An `io.ComfyNode` subclass for this spec."""

    def define_schema(cls):
        return io.Schema(
            node_id=spec.node_id,
            display_name=spec.display_name,
            category=spec.category,
            description=spec.description,
            inputs=[v3_input(field) for field in spec.inputs],
            outputs=[io.Custom(out.kind).Output(display_name=out.name, tooltip=out.tooltip, is_output_list=out.is_list)
                     for out in spec.outputs],
        )

    def execute(cls, **kwargs):
        return io.NodeOutput(*spec.run(**kwargs))

    return type(spec.node_id, (io.ComfyNode,), {
        "define_schema": classmethod(define_schema),
        "execute": classmethod(execute),
    })


def exports(specs) -> dict:
    """What the pack's `__init__.py` exports: `comfy_entrypoint` on V3 ComfyUI, else the classic mappings.

    ComfyUI prefers `NODE_CLASS_MAPPINGS` when a module has both, so only one is ever exported.
    """
    if not HAS_V3:
        return {
            "NODE_CLASS_MAPPINGS": {spec.node_id: classic_node(spec) for spec in specs},
            "NODE_DISPLAY_NAME_MAPPINGS": {spec.node_id: spec.display_name for spec in specs},
        }
    node_classes = [v3_node(spec) for spec in specs]

    class SkipTuningExtension(ComfyExtension):
        async def get_node_list(self):
            return node_classes

    async def comfy_entrypoint():
        return SkipTuningExtension()

    return {"comfy_entrypoint": comfy_entrypoint}
