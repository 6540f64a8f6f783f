"""The newest ComfyUI frontend (comfyui-frontend-package 1.58.1), served by ComfyUI 0.3.64 with --front-end-root, in
a real headless Chromium: the example workflows load without a missing node or a console error; the templates dialog
lists this pack's six workflows with their thumbnails; Nodes 2.0 (Vue nodes) shows the Skip Tuning node's widgets,
values and tooltips, and folds Skip Tuning (Advanced)'s `block_rhos` and `ranges` under "Show advanced inputs";
the node search finds every node by its display name and Skip Tuning by its search aliases. It protects what users
of current frontends see (issues #24 and #27). Screenshots go to lab_output/browser/frontend-1.58.1/."""
import math
from urllib.parse import unquote

import pytest
import requests
from test_browser import PACK, REPO, WORKFLOWS, load_workflow, new_errors, served_page

from skip_tuning_core import HELP
from skip_tuning_lab.comfy_host import load_pack

VERSION = "1.58.1"
STATIC = REPO / ".venv" / "hosts" / f"comfyui-frontend-{VERSION}" / "comfyui_frontend_package" / "static"
SHOTS = REPO / "lab_output" / "browser" / f"frontend-{VERSION}"
# What ComfyUI 0.3.64's server lacks and this frontend asks for anyway (the jobs API, global subgraphs, a newer
# templates package's logo index): their 404s and the errors logged about them say nothing about this pack.
SERVER_GAPS = ("/api/jobs", "JobsApiError", "/api/global_subgraphs", "/templates/index_logo.json")


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture(scope="module")
def page(tmp_path_factory, pack):
    if not (STATIC / "index.html").is_file():
        pytest.skip(f"comfyui-frontend-package {VERSION} is not installed at {STATIC}: run tools/setup.sh")

    def prepare(server, page):
        # A returning user: no first-run templates dialog or tour; the classic canvas until a test turns Nodes 2.0 on.
        requests.post(f"{server.url}/api/settings", timeout=30,
                      json={"Comfy.TutorialCompleted": True, "Comfy.VueNodes.Enabled": False}).raise_for_status()
        page.route("**/api/object_info", lambda route: route.fulfill(json=with_search_aliases(route, pack)))

    with served_page(tmp_path_factory, SHOTS, ["--front-end-root", STATIC], prepare) as (page, _):
        page.wait_for_timeout(2000)  # the startup requests settle
        yield page


def with_search_aliases(route, pack) -> dict:
    """The server's /object_info as a server from late 2025 sends it. ComfyUI 0.3.64's server.py leaves
    `search_aliases` out; ComfyUI 0.38.1's server.py node_info has `info['search_aliases'] = getattr(obj_class,
    'SEARCH_ALIASES', [])` for every V1 node. So each node gets its class's SEARCH_ALIASES (this pack's classes are
    at hand; 0.3.64's own nodes have none), unless the server already sent them."""
    info = route.fetch().json()
    for name, node in info.items():
        node.setdefault("search_aliases", list(getattr(pack.NODE_CLASS_MAPPINGS.get(name), "SEARCH_ALIASES", [])))
    return info


def errors_since(page, before: int) -> list:
    return [e for e in new_errors(page, before) if not any(gap in e for gap in SERVER_GAPS)]


def close_dialogs(page):
    page.keyboard.press("Escape")
    page.get_by_role("dialog").first.wait_for(state="detached", timeout=10000)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_each_example_workflow_loads_without_a_missing_node_or_an_error(page, path):
    before = len(page.errors)
    unknown, text = load_workflow(page, path, SHOTS)
    assert unknown == []
    # This frontend's toast for an unknown node type reads "Missing node: <type>" (the example workflows' SD
    # checkpoints are missing here, and that toast is allowed).
    assert "missing node" not in text
    assert errors_since(page, before) == []


def test_the_templates_dialog_shows_this_packs_cards_with_thumbnails(page):
    # Each card's thumbnail comes from the pack's /api/workflow_templates/ route and shows as a blob: the route's
    # answers say which thumbnails came, each card's decoded image that it shows one.
    before = len(page.errors)
    fetched = []
    record = lambda r: fetched.append(unquote(r.url.split("/")[-1])) \
        if f"/workflow_templates/{PACK}/" in r.url and r.url.endswith(".jpg") and r.ok else None
    page.on("response", record)
    page.set_viewport_size({"width": 1400, "height": 1600})  # cards load their image only once on screen
    names = [p.stem for p in WORKFLOWS]
    try:
        page.evaluate("window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name=PACK, exact=True).click()  # under the "Extensions" group
        page.wait_for_function("names => names.every(n => { const img = document.querySelector("
                               "`[data-testid=\"template-workflow-${n}\"] img`);"
                               " return img && img.complete && img.naturalWidth > 0 })", arg=names, timeout=20000)
        cards = dialog.locator('[data-testid^="template-workflow-"]:not([data-testid$="-content"])')
        shown = cards.evaluate_all("cs => cs.map(c => c.dataset.testid.slice('template-workflow-'.length))")
        page.screenshot(path=SHOTS / "templates.png")
    finally:
        page.set_viewport_size({"width": 1400, "height": 900})
        page.remove_listener("response", record)
        close_dialogs(page)
    assert sorted(shown) == sorted(names)
    assert sorted(set(fetched)) == sorted(f"{name}.jpg" for name in names)
    assert errors_since(page, before) == []


def search(page, query: str, expected: str, shot: str) -> list:
    """The names the default node search box lists for `query`, once `expected` is among them (or after 5 s)."""
    page.evaluate("window.app.extensionManager.command.execute('Workspace.SearchBox.Toggle')")
    box = page.get_by_placeholder("Add a node")
    box.fill(query)
    items = page.locator('#results-list [data-testid="result-item"]')
    names = []
    for _ in range(25):
        page.wait_for_timeout(200)
        names = [text.splitlines()[0].strip() for text in items.all_inner_texts()]
        if expected in names:
            break
    page.screenshot(path=SHOTS / shot)
    box.blur()  # as in test_browser.py: the box's change event must not reach a component that is gone
    close_dialogs(page)
    return names


def test_the_node_search_finds_every_node_by_its_display_name(page, pack):
    before = len(page.errors)
    listed = page.evaluate("Object.keys(LiteGraph.registered_node_types)")
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) <= set(listed)  # the five nodes: three, and the two lab nodes
    for node_id, display_name in pack.NODE_DISPLAY_NAME_MAPPINGS.items():
        names = search(page, display_name, display_name, f"search_{node_id}.png")
        assert names[:1] == [display_name], (display_name, names)
    assert errors_since(page, before) == []


@pytest.mark.parametrize("alias", ["FreeU", "skip connection"])
def test_the_node_search_finds_skip_tuning_by_an_alias(page, pack, alias):
    assert alias in pack.NODE_CLASS_MAPPINGS["SkipTuning"].SEARCH_ALIASES
    # Neither alias is in the node's name or display name: only `search_aliases` can make the search list it.
    display_name = pack.NODE_DISPLAY_NAME_MAPPINGS["SkipTuning"]
    names = search(page, alias, display_name, f"search_alias_{alias.replace(' ', '_')}.png")
    assert display_name in names, names


def test_nodes_2_show_the_widgets_their_tooltips_and_fold_the_advanced_inputs(page, pack):
    before = len(page.errors)
    page.evaluate("window.app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true)")
    try:
        ids = page.evaluate("""() => { const graph = window.app.graph; graph.clear();
            const ids = {};
            for (const [type, x] of [['SkipTuning', 100], ['SkipTuningAdvanced', 500]]) {
                const node = LiteGraph.createNode(type); node.pos = [x, 250]; graph.add(node); ids[type] = node.id; }
            window.app.canvas.ds.offset = [0, 0]; window.app.canvas.ds.scale = 1;
            window.app.canvas.setDirty(true, true); return ids }""")
        node = page.locator(f'[data-node-id="{ids["SkipTuning"]}"]')
        node.wait_for(timeout=10000)
        # Each float widget with its default, shown at the precision of its step (0.01: "0.80"; 0.001: "1.000").
        specs = pack.NODE_CLASS_MAPPINGS["SkipTuning"].INPUT_TYPES()["required"]
        expected = {name: f"{spec[1]['default']:.{round(-math.log10(spec[1]['step']))}f}"
                    for name, spec in specs.items() if spec[0] == "FLOAT"}
        assert expected["rho_top"] == "1.00" and expected["rho_bottom"] == "0.80"
        shown = {name: node.locator(f'[data-widget-name="{name}"] input').input_value() for name in expected}
        node.locator('[data-widget-name="rho_bottom"] [data-testid="widget-layout-field-label"]').hover()
        tooltip = page.get_by_role("tooltip")  # the bubble's text (a screen reader's copy of it is aria-hidden)
        tooltip.wait_for(timeout=10000)
        tip = tooltip.inner_text()
        page.screenshot(path=SHOTS / "nodes2_tooltip.png")
        assert shown == expected
        assert " ".join(tip.split()) == HELP["rho_bottom"]

        page.mouse.move(700, 800)
        advanced = page.locator(f'[data-node-id="{ids["SkipTuningAdvanced"]}"]')
        folded = {name: advanced.locator(f'[data-widget-name="{name}"]') for name in ("block_rhos", "ranges")}
        assert advanced.locator('[data-widget-name="rho_bottom"]').is_visible()
        assert not any(widget.is_visible() for widget in folded.values())
        button = advanced.locator('[data-testid="advanced-inputs-button"]')
        assert button.inner_text().strip() == "Show advanced inputs"
        page.screenshot(path=SHOTS / "nodes2_advanced_folded.png")
        button.click()
        for widget in folded.values():
            widget.wait_for(state="visible", timeout=10000)
        page.mouse.move(700, 800)
        page.screenshot(path=SHOTS / "nodes2_advanced_shown.png")
        assert button.inner_text().strip() == "Hide advanced inputs"
        assert advanced.locator('[data-widget-name="ranges"] textarea').input_value() == "0.0-1.0"
    finally:
        page.evaluate("window.app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false)")
    assert errors_since(page, before) == []
