"""The node pack as ComfyUI's loader and ComfyUI-Manager's source scanner see it."""
import ast
import json
from pathlib import Path

from skip_tuning_lab.comfy_host import load_pack

REPO = Path(__file__).resolve().parents[1]
SAVED = json.loads((Path(__file__).parent / "data" / "nodes_0.1.0.json").read_text())


def literal_mapping_keys(path: Path) -> set:
    """The string keys of every `NODE_CLASS_MAPPINGS = {...}` dict literal in a file, read without running it."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NODE_CLASS_MAPPINGS" for t in node.targets):
            if isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return keys


def test_every_node_id_is_a_literal_a_source_scanner_finds(comfy_nodes_loaded):
    pack = load_pack()
    in_source = set().union(*(literal_mapping_keys(p) for p in [REPO / "__init__.py", *REPO.glob("nodes/*.py")]))
    assert set(pack.NODE_CLASS_MAPPINGS) == in_source == set(SAVED)
    for node_id in SAVED:
        assert comfy_nodes_loaded[node_id] is pack.NODE_CLASS_MAPPINGS[node_id]
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id] == SAVED[node_id]["display_name"]


def input_list(node_class) -> list:
    """A node's inputs in widget order, in the form tests/data/nodes_0.1.0.json recorded them."""
    out = []
    for name, spec in node_class.INPUT_TYPES()["required"].items():
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        entry = {"name": name, "type": ["COMBO", kind] if isinstance(kind, list) else kind}
        entry.update({k: options[k] for k in ("default", "min", "max", "step", "multiline") if k in options})
        if kind == "STRING":  # 0.1.0 wrote ComfyUI's default out
            entry.setdefault("multiline", False)
        out.append(entry)
    return out


def test_every_node_keeps_the_ids_inputs_order_types_and_defaults_of_version_0_1_0(comfy_nodes_loaded):
    """Saved workflows refer to node ids and store widget values by position (recorded from 0.1.0's V3 nodes)."""
    for node_id, saved in SAVED.items():
        node_class = comfy_nodes_loaded[node_id]
        inputs = input_list(node_class)
        if node_id == "SkipTuningDigitsLoader":  # its choices are the files in lab_models/
            inputs[0]["type"] = "COMBO"
            inputs[0].pop("default")
        assert inputs == saved["inputs"], node_id
        assert list(node_class.RETURN_TYPES) == saved["outputs"], node_id
        assert list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(saved["outputs"]))) == saved["output_is_list"]
        assert node_class.CATEGORY == saved["category"], node_id
