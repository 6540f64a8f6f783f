"""The node pack as ComfyUI's loader and ComfyUI-Manager's source scanner see it."""
import ast
import json
from pathlib import Path

from skip_tuning_lab.comfy_host import load_pack

REPO = Path(__file__).resolve().parents[1]
SAVED = json.loads((Path(__file__).parent / "data" / "nodes_0.1.0.json").read_text())
# Display names are not stored in workflows; this one was shortened for frontend 1.58's node search.
RENAMED = {"SkipTuningDigitsLoader": "Load Digits (Skip Tuning lab)"}
# Nodes added since 0.1.0 (the record stays as it was: workflows saved then must keep loading).
ADDED = {"ResidualTuningDiT": "Residual Tuning (DiT, exp.)"}
SEARCH_LIMIT = 32  # frontend 1.58.1's node search finds nothing for a longer query


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
    assert set(pack.NODE_CLASS_MAPPINGS) == in_source == set(SAVED) | set(ADDED)
    for node_id, name in ADDED.items():
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id] == name and len(name) <= SEARCH_LIMIT
    for node_id in SAVED:
        assert comfy_nodes_loaded[node_id] is pack.NODE_CLASS_MAPPINGS[node_id]
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id] == RENAMED.get(node_id, SAVED[node_id]["display_name"])
        assert len(pack.NODE_DISPLAY_NAME_MAPPINGS[node_id]) <= SEARCH_LIMIT, node_id


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


def test_object_info_marks_the_expert_inputs_advanced_and_gives_search_aliases(comfy_nodes_loaded):
    """What ComfyUI's /object_info passes to the frontend: V1 input options verbatim (`advanced` folds an input
    under "Advanced Inputs" in Vue nodes) and, from late-2025 servers on, a class's SEARCH_ALIASES."""
    advanced = {node_id: [name for name, spec in comfy_nodes_loaded[node_id].INPUT_TYPES()["required"].items()
                          if len(spec) > 1 and spec[1].get("advanced")] for node_id in SAVED}
    assert advanced["SkipTuningAdvanced"] == ["block_rhos", "ranges"]
    assert advanced["SkipTuning"] == [] and advanced["SkipTuningSweep"] == []
    for node_id in ("SkipTuning", "SkipTuningAdvanced", "SkipTuningSweep"):
        aliases = comfy_nodes_loaded[node_id].SEARCH_ALIASES
        assert {"skip connection", "FreeU"} <= set(aliases) and all(isinstance(a, str) for a in aliases)
