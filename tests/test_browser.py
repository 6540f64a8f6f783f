"""ComfyUI 0.3.64's own frontend, in a real headless Chromium: the example workflows load without a missing-node
dialog or console error, the node search finds Skip Tuning, the templates browser shows this pack's cards with
their thumbnails, the node's help page opens, and Run makes images. Screenshots go to lab_output/browser/."""
import contextlib
import json
import shutil
import time
from urllib.parse import unquote
from pathlib import Path

import pytest

from skip_tuning_lab.comfy_server import ComfyServer
from skip_tuning_lab.hosts import host_tree

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FRONTEND = REPO / ".venv" / "hosts" / "comfyui-0.3.64-frontend"
SHOTS = REPO / "lab_output" / "browser"
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
# As the machine notes say: without the background-networking flags Chromium keeps dialling hosts it cannot reach.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PACK = REPO.name  # the folder name ComfyUI lists the pack's templates and web files under


@contextlib.contextmanager
def served_page(tmp_path_factory, shots, extra_args=(), prepare=None):
    """ComfyUI 0.3.64 (its own frontend packages on the path) and a headless Chromium page on it that writes
    console errors, page errors and failed responses to `page.errors`; `prepare(server, page)` runs before the
    page loads. Skips, saying why, where a part is missing. Yields (page, playwright's sync_api)."""
    sync_api = playwright_or_skip()
    try:
        root = host_tree("comfyui-0.3.64")
    except FileNotFoundError as missing:
        pytest.skip(f"no ComfyUI 0.3.64 to serve the frontend: {missing}")
    if not FRONTEND.is_dir():  # also its templates and docs packages, which 0.3.64 serves with any frontend
        pytest.skip(f"ComfyUI 0.3.64's frontend is not installed at {FRONTEND}: run tools/setup.sh")
    shots.mkdir(parents=True, exist_ok=True)
    with ComfyServer(tmp_path_factory.mktemp("comfyui"), root=root, python_path=[FRONTEND],
                     extra_args=list(extra_args)) as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = recording_page(browser)
        if prepare is not None:
            prepare(server, page)
        page.goto(server.url)
        page.wait_for_function("window.app && window.app.graph && window.app.extensionManager", timeout=120000)
        page.server = server
        yield page, sync_api
        browser.close()


def playwright_or_skip():
    """playwright's sync API, or a skip saying what is missing for a browser test."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: run tools/setup.sh")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (tools/setup.sh installs it where apt-get may)")
    return sync_api


def recording_page(browser):
    """A new 1400x900 page of `browser` that writes console errors, page errors and failed responses to
    `page.errors`."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.errors = []
    page.on("console", lambda m: page.errors.append(f"{m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("response", lambda r: page.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return page


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with served_page(tmp_path_factory, SHOTS) as (page, sync_api):
        try:  # a new user gets the templates dialog, once the template index has loaded
            page.locator(".p-dialog").first.wait_for(timeout=15000)
            close_dialog(page)
        except sync_api.TimeoutError:
            pass
        yield page


def close_dialog(page):
    page.keyboard.press("Escape")
    page.locator(".p-dialog-mask").first.wait_for(state="detached", timeout=10000)


def new_errors(page, before: int) -> list:
    return page.errors[before:]


def load_workflow(page, path, shots) -> tuple:
    """Load an example workflow into the page and screenshot it: (the node types the frontend does not know,
    the page's text in lower case)."""
    page.evaluate("wf => window.app.loadGraphData(wf)", json.loads(path.read_text()))
    page.wait_for_timeout(1500)
    page.screenshot(path=shots / f"{path.stem}.png")
    unknown = page.evaluate("window.app.graph.nodes.filter(n => !(n.type in LiteGraph.registered_node_types) "
                            "&& n.type !== 'Note').map(n => n.type)")
    return unknown, page.inner_text("body").lower()


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_each_example_workflow_loads_without_a_missing_node_or_an_error(page, path):
    before = len(page.errors)
    unknown, text = load_workflow(page, path, SHOTS)
    assert unknown == []
    assert "the following node types were not found" not in text
    assert new_errors(page, before) == []


def test_the_node_search_finds_skip_tuning(page):
    page.evaluate("window.app.extensionManager.command.execute('Workspace.SearchBox.Toggle')")
    box = page.get_by_placeholder("Search Nodes...", exact=False)
    box.fill("Skip Tuning")
    page.wait_for_timeout(1000)
    page.screenshot(path=SHOTS / "node_search.png")
    results = page.locator(".p-autocomplete-list, .comfy-vue-node-search-container").first.inner_text()
    # The box fires its change event on blur: leaving it before the dialog closes keeps that event away from a
    # component that is gone (the frontend logs a TypeError otherwise).
    box.blur()
    close_dialog(page)
    assert "Skip Tuning" in results and "Skip Tuning (Advanced)" in results and "Skip Tuning Sweep" in results


def test_the_templates_browser_shows_this_packs_cards_with_thumbnails(page):
    # The frontend fetches each thumbnail from the pack's /api/workflow_templates/ route and shows it as a blob:
    # the route's answers say which thumbnails came, the decoded images that each one shows.
    before = len(page.errors)
    fetched = []
    record = lambda r: fetched.append(unquote(r.url.split("/")[-1])) \
        if f"/workflow_templates/{PACK}/" in r.url and r.url.endswith(".jpg") and r.ok else None
    page.on("response", record)
    page.set_viewport_size({"width": 1400, "height": 2000})  # cards load their image only once on screen
    try:
        page.evaluate("window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        dialog = page.locator(".p-dialog")
        dialog.get_by_text(PACK, exact=True).first.click()
        page.wait_for_function("n => { const imgs = [...document.querySelectorAll('.p-dialog img')];"
                               " return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0) }",
                               arg=len(WORKFLOWS), timeout=20000)
        page.screenshot(path=SHOTS / "templates.png")
    finally:
        page.set_viewport_size({"width": 1400, "height": 900})
        page.remove_listener("response", record)
        close_dialog(page)
    assert sorted(set(fetched)) == sorted(f"{p.stem}.jpg" for p in WORKFLOWS)
    assert new_errors(page, before) == []


def test_the_help_page_of_the_node_opens(page):
    page.evaluate("wf => window.app.loadGraphData(wf)",
                  json.loads((REPO / "example_workflows" / "lab_digits_ab.json").read_text()))
    page.evaluate("window.app.canvas.selectNode(window.app.graph.nodes.find(n => n.type === 'SkipTuning'))")
    page.locator('[data-testid="info-button"]').first.click()
    heading = (REPO / "web" / "docs" / "SkipTuning.md").read_text().splitlines()[0].lstrip("# ")
    page.get_by_text(heading, exact=True).first.wait_for(timeout=10000)
    page.screenshot(path=SHOTS / "help.png")


def test_run_makes_the_images_of_the_lab_workflow(page):
    page.evaluate("wf => window.app.loadGraphData(wf)",
                  json.loads((REPO / "example_workflows" / "lab_digits_ab.json").read_text()))
    before = len(page.errors)
    page.get_by_role("button", name="Run").first.click()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        shown = page.evaluate("window.app.graph.nodes.filter(n => n.type === 'SaveImage')"
                              ".map(n => (n.imgs || []).length)")
        if shown and all(shown):
            break
        page.wait_for_timeout(1000)
    page.screenshot(path=SHOTS / "run.png")
    assert shown and all(shown), shown
    assert new_errors(page, before) == []
