"""The WebUI extension's pages in a real headless Chromium, on AUTOMATIC1111 1.10.1 (gradio 3.41) and Forge main
(gradio 4.40), each started as its own application with the gradio UI (tests/webui_apps.py, `--api`) and a tiny
random checkpoint: the Skip Tuning accordion in txt2img, Generate and the infotext under the image, PNG Info ->
"Send to txt2img" restoring every Skip Tuning control, the X/Y/Z plot's four axes, the Settings section, and the
Skip Tuning tab's picture and presets. Screenshots go to lab_output/browser/webui/<host>/."""
import base64
import io
import re
import shutil
import subprocess

import pytest
import webui_apps
from PIL import Image, ImageChops, PngImagePlugin
from test_browser import CHROMIUM, CHROMIUM_ARGS, REPO, playwright_or_skip, recording_page

from skip_tuning_core.presets import RECOMMENDED, load_measurements, sampler_label

SHOTS = REPO / "lab_output" / "browser" / "webui"
HOSTS = ["a1111", "forge"]
ACCORDION = "script_txt2img_skip_tuning_"  # A1111's Script.elem_id: script_<tab>_<title>_<name>
BLOCKS = "0.5 0.55 0.6 0.65 0.7 0.75 0.8 0.85 0.9 0.95 1 1"  # one per output block of the tiny checkpoints (12)
# What the test types into the accordion, and what the image's infotext then says.
TYPED = {"rho_top": "0.95", "rho_bottom": "0.55", "start_percent": "0.1", "end_percent": "0.9"}
INFOTEXT = f"Skip Tuning: rho_top=0.95; rho_bottom=0.55; start=0.1; end=0.9; blocks={BLOCKS}"
AXES = [f"[Skip Tuning] {name}" for name in ("rho_top", "rho_bottom", "start_percent", "end_percent")]
# Errors of the hosts' own pages here, whatever the extension does: gradio loads iframeResizer from a CDN (no
# network here), the WebUI's font stylesheet lives in the assets repository that the launcher leaves empty, and
# on A1111 a change of width or height makes gradio 3.41's own Blocks.js throw "Cannot read properties of
# undefined (reading 'props')" (with or without this extension).
HOST_GAPS = ("iframeResizer", "/webui-assets/", "reading 'props'")


@pytest.fixture(scope="module", params=HOSTS)
def page(request, tmp_path_factory):
    """The host's txt2img page, served by its own launch.py with the gradio UI. The host tree and its data folder
    are copied outside .hosts/: gradio 3.41's /file= route refuses any path with a part starting with "."
    (gradio/routes.py `is_dotfile`), which would be every script, stylesheet and image of a WebUI there. Forge
    main serves /file= only from its `--gradio-allowed-path`s, whose default is the data folder alone, so with a
    data folder of its own its own javascript/ would be refused (HTTP 403) as well: its tree is added."""
    host = request.param
    sync_api = playwright_or_skip()
    place = tmp_path_factory.mktemp(f"webui-{host}")
    try:
        tree = webui_apps.source_tree(host)
    except webui_apps.HostUnavailable as missing:
        pytest.skip(str(missing))
    copy = place / tree.name
    shutil.copytree(tree, copy, symlinks=True)
    shots = SHOTS / host
    shots.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webui_apps, "source_tree", lambda name, unpacked=webui_apps.source_tree:
                      copy if name == host else unpacked(name))
        patch.setattr(webui_apps, "APPS", place / "apps")
        try:
            with webui_apps.webui_app(host, extra_args=["--gradio-allowed-path", str(copy)]) as app, \
                    sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = recording_page(browser)
                page.app, page.shots, page.tmp = app, shots, place
                yield page
                browser.close()
        except webui_apps.HostUnavailable as missing:
            pytest.skip(str(missing))


def open_txt2img(page):
    """(Re)load the page and wait until A1111's inputAccordion.js has set up the accordion's checkbox; each test
    starts here, so `page.errors` holds what went wrong since."""
    page.errors.clear()
    page.goto(page.app.url)
    page.locator(f"#{ACCORDION}enabled-visible-checkbox").wait_for(state="attached", timeout=120000)


def tab(page, tabs: str, name: str):
    """Click the tab button NAME of the gr.Tabs `tabs` (gradio 3 and 4 both put them in a `.tab-nav`)."""
    page.locator(f"{tabs} > .tab-nav > button").filter(
        has_text=re.compile(rf"^\s*{re.escape(name)}\s*$", re.IGNORECASE)).click()


def number(page, elem_id: str, value=None) -> str:
    """The number box of slider ELEM_ID; typing VALUE first (gradio takes it on blur)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    if value is not None:
        box.fill(str(value))
        box.blur()
    return box.input_value()


def host_errors(page) -> list:
    return [e for e in page.errors if not any(gap in e for gap in HOST_GAPS)]


@pytest.fixture(scope="module")
def generated(page):
    """Open the accordion, type every Skip Tuning value, Generate (4 steps at 64x64): (the infotext under the
    image, the image's PNG file)."""
    open_txt2img(page)
    page.locator(f"#{ACCORDION}enabled .label-wrap").click()
    for elem_id, value in (("txt2img_steps", 4), ("txt2img_width", 64), ("txt2img_height", 64)):
        number(page, elem_id, value)
    for name, value in TYPED.items():
        number(page, ACCORDION + name, value)
    page.locator(f"#{ACCORDION}block_rhos textarea").fill(BLOCKS)
    page.locator("#txt2img_generate").click()
    page.wait_for_function("document.querySelector('#html_info_txt2img').innerText.includes('Steps:')",
                           timeout=180000)
    page.locator(".progressDiv").wait_for(state="detached")  # A1111's progressbar.js, gone once it is done
    page.screenshot(path=page.shots / "generated.png", full_page=True)
    infotext = page.locator("#html_info_txt2img").first.inner_text()
    png = page.tmp / "generated.png"
    png.write_bytes(page.request.get(page.locator("#txt2img_gallery img").first.get_attribute("src")).body())
    return infotext, png


def test_generate_writes_the_skip_tuning_line_under_the_image(page, generated):
    infotext, png = generated
    assert "Steps: 4," in infotext and "Size: 64x64," in infotext
    assert INFOTEXT in infotext
    assert INFOTEXT in Image.open(png).info["parameters"]  # the saved file says the same
    assert host_errors(page) == []


def send_to_txt2img(page, png, shown: str):
    """PNG Info with the file PNG, then its "Send to txt2img", once PNG Info shows the text SHOWN."""
    tab(page, "#tabs", "PNG Info")
    page.locator("#pnginfo_image input[type=file]").set_input_files(png)
    page.wait_for_function(f"document.querySelector('#tab_pnginfo').innerText.includes({shown!r})", timeout=60000)
    page.locator("#txt2img_tab").click()


def accordion_state(page) -> tuple:
    """(the box on the accordion, the hidden checkbox whose value the script receives, whether it is open)."""
    return (page.locator(f"#{ACCORDION}enabled-visible-checkbox").is_checked(),
            page.locator(f"#{ACCORDION}enabled-checkbox input").is_checked(),
            "input-accordion-open" in page.locator(f"#{ACCORDION}enabled").get_attribute("class"))


def test_png_info_send_to_txt2img_restores_every_skip_tuning_control(page, generated):
    _, png = generated
    open_txt2img(page)  # every control back at its default first
    assert accordion_state(page) == (False, False, False)
    assert number(page, ACCORDION + "rho_bottom") == "0.8"
    send_to_txt2img(page, png, "Skip Tuning: rho_top")
    page.wait_for_function(f"document.querySelector('#{ACCORDION}rho_bottom input[type=number]').value === '0.55'",
                           timeout=30000)
    page.screenshot(path=page.shots / "sent_to_txt2img.png", full_page=True)
    assert page.locator("#tab_txt2img").is_visible()
    assert accordion_state(page) == (True, True, True)
    assert {name: number(page, ACCORDION + name) for name in TYPED} == TYPED
    assert page.locator(f"#{ACCORDION}block_rhos textarea").input_value() == BLOCKS.replace(" ", ", ")
    assert host_errors(page) == []


def test_png_info_of_an_image_without_skip_tuning_turns_the_accordion_off(page):
    """The parameters of an image made without Skip Tuning close an accordion that was on (params.py
    expand_infotext), and leave its values as they were."""
    png = page.tmp / "untuned.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a digit\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64")
    Image.new("RGB", (64, 64), "gray").save(png, pnginfo=info)
    open_txt2img(page)
    page.locator(f"#{ACCORDION}enabled .label-wrap").click()
    number(page, ACCORDION + "rho_bottom", "0.6")
    assert accordion_state(page) == (True, True, True)
    send_to_txt2img(page, png, "Seed: 1")
    page.wait_for_function(f"!document.querySelector('#{ACCORDION}enabled-visible-checkbox').checked", timeout=30000)
    page.screenshot(path=page.shots / "sent_untuned_to_txt2img.png", full_page=True)
    assert accordion_state(page) == (False, False, False)
    assert number(page, "txt2img_steps") == "4"
    assert number(page, ACCORDION + "rho_bottom") == "0.6"
    assert host_errors(page) == []


def test_the_xyz_plot_script_lists_the_four_skip_tuning_axes(page):
    open_txt2img(page)
    scripts = page.locator("#txt2img_script_container #script_list")
    scripts.locator("input").click()
    scripts.locator("ul.options li").filter(has_text="X/Y/Z plot").click()
    x_type = page.locator("#script_txt2img_xyz_plot_x_type")
    x_type.locator("input").click()
    options = [option.strip() for option in x_type.locator("ul.options li").all_inner_texts()]
    x_type.locator("ul.options li").filter(has_text=AXES[1]).click()
    page.screenshot(path=page.shots / "xyz_axes.png")
    assert [option for option in options if option.startswith("[Skip Tuning]")] == AXES
    assert x_type.locator("input").input_value() == AXES[1]
    assert host_errors(page) == []


def test_settings_show_the_skip_tuning_section(page):
    open_txt2img(page)
    tab(page, "#tabs", "Settings")
    tab(page, "#settings", "Skip Tuning")
    section = page.locator("#settings_skip_tuning")
    section.wait_for()
    page.screenshot(path=page.shots / "settings.png", full_page=True)
    assert section.inner_text().split("\n") == [
        "Default rho_top", "Default rho_bottom", "Apply in the hires pass too (off: only the first pass is tuned)"]
    assert number(page, "setting_skip_tuning_default_rho_top") == "1"
    assert number(page, "setting_skip_tuning_default_rho_bottom") == "0.8"
    assert page.locator("#setting_skip_tuning_in_hires_pass input").is_checked()
    assert host_errors(page) == []


def drawn_by_the_host(page, *args) -> Image.Image:
    """skip_tuning_core.picture.draw_settings(*args) as the host's own venv draws it (its Pillow's default font
    differs from this venv's)."""
    out = page.tmp / "expected.png"
    code = f"from skip_tuning_core.picture import draw_settings; draw_settings{args!r}.save({str(out)!r})"
    subprocess.run([str(webui_apps.host_python(page.app.host)), "-c", code], cwd=REPO, check=True, timeout=120)
    return Image.open(out).convert("RGB")


def shown_picture(page) -> Image.Image:
    """The tab's picture as the browser got it (gradio 3 sends a data: URL, gradio 4 a /file= URL)."""
    src = page.locator("#tab_skip_tuning img").first.get_attribute("src")
    data = base64.b64decode(src.partition(",")[2]) if src.startswith("data:") else page.request.get(src).body()
    return Image.open(io.BytesIO(data)).convert("RGB")


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def test_the_skip_tuning_tab_draws_the_picture_and_lists_the_presets(page):
    open_txt2img(page)
    tab(page, "#tabs", "Skip Tuning")
    panel = page.locator("#tab_skip_tuning")
    panel.locator("img").first.wait_for()
    assert same_pixels(shown_picture(page), drawn_by_the_host(page, 12, 1.0, 0.8))
    before = panel.locator("img").first.get_attribute("src")
    rho_bottom = panel.locator(".gradio-slider").nth(1).locator("input[type=number]")
    rho_bottom.fill("0.5")
    rho_bottom.blur()
    page.wait_for_function(f"document.querySelector('#tab_skip_tuning img').src !== {before!r}", timeout=30000)
    page.screenshot(path=page.shots / "tab.png", full_page=True)
    assert same_pixels(shown_picture(page), drawn_by_the_host(page, 12, 1.0, 0.5))
    # The presets table by its column names (presets_markdown has more columns than these).
    header = [cell.strip() for cell in panel.locator("table thead th").all_inner_texts()]
    rows = [dict(zip(header, (cell.strip() for cell in row.locator("td").all_inner_texts())))
            for row in panel.locator("table tbody tr").all()]
    assert [(row["sampler"], row["steps"], row["rho_bottom"]) for row in rows] == [
        (sampler_label(e["sampler"]).replace("`", ""), str(e["steps"]), f"{e['rho_bottom']:g}")
        for e in load_measurements() if e["verdict"] == RECOMMENDED]
    assert host_errors(page) == []
