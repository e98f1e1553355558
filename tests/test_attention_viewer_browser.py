"""The attention viewer's page in a real browser: headless Chromium through selenium, the page opened from file://
with the network blocked. Skipped (with the reason printed) where Chromium, chromedriver or selenium is missing.

One browser session serves the module. Screenshots of each view go to $BERTJAX_SCREENSHOTS if set, else to a
temporary directory.
"""
import os
import shutil
import sys
import types

import numpy as np
import pytest

from bertjax.attention_viewer.encoding import ATTENTION_ERROR, decode_int8_vectors, decode_uint8_probs
from bertjax.attention_viewer.page import render_fragment, render_page
from viewer_fixture import synthetic_view_data


def _find(*names):
    for name in names:
        path = shutil.which(name) or (name if os.path.isfile(name) else None)
        if path:
            return path
    return None


CHROMIUM = _find("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = _find("/usr/bin/chromedriver", "chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    _SELENIUM = None
except ImportError as error:
    _SELENIUM = f"selenium is not installed ({error})"

_MISSING = _SELENIUM or (None if CHROMIUM else "no Chromium (chromium) found") or (
    None if CHROMEDRIVER else "no chromedriver found")
if _MISSING:
    print(f"test_attention_viewer_browser skipped: {_MISSING}", file=sys.stderr)
    pytest.skip(_MISSING, allow_module_level=True)

VIEWS = ["head-view", "model-view", "cls-view", "mlm-view", "neuron-view"]
LAYERS, HEADS, HEAD_DIM = 2, 3, 4
EXAMPLES = [dict(seq=9, pairs=1, seed=0), dict(seq=18, pairs=2, seed=1)]  # the second: a packed row of 2 pairs


def _data():
    data, raws = None, []
    for spec in EXAMPLES:
        one, raw = synthetic_view_data(num_layers=LAYERS, num_heads=HEADS, head_dim=HEAD_DIM, **spec)
        raws.append(raw)
        if data is None:
            data = one
        else:
            data["examples"] += one["examples"]
    return data, raws


def _chrome():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--allow-file-access-from-files",
                # no network: every request goes to a dead proxy, every host name fails to resolve
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def _wait_ready(driver, timeout=60):
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "return document.body && (document.body.dataset.ready === '1' || document.body.dataset.error === '1')"))
    error = driver.execute_script("const e = document.querySelector('.bjv-error'); return e && e.textContent")
    assert error is None, error


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attention_viewer")
    shots = os.environ.get("BERTJAX_SCREENSHOTS") or str(tmp / "screenshots")
    os.makedirs(shots, exist_ok=True)
    data, raws = _data()
    page = tmp / "attention.html"
    page.write_text(render_page(data, title="synthetic </script> attention"), encoding="utf-8")
    fragment = tmp / "fragment.html"
    fragment.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>notebook</title></head><body>"
                        "<p>a notebook cell</p>" + render_fragment(data, title="in a cell") + "</body></html>",
                        encoding="utf-8")
    driver = _chrome()
    try:
        url = page.as_uri()
        driver.get(url)
        _wait_ready(driver)
        yield types.SimpleNamespace(driver=driver, url=url, fragment_url=fragment.as_uri(), data=data, raws=raws,
                                    shots=shots)
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def fresh_state(viewer):
    """Every test starts on the main page in the first example, layer 0, all heads; afterwards, the browser console
    must hold no errors."""
    driver = viewer.driver
    if driver.current_url != viewer.url:
        driver.get(viewer.url)
        _wait_ready(driver)
    driver.execute_script("const v = bertjaxView; v.setExample(0); v.setLayer(0); v.setHeads(arguments[0]);",
                          list(range(HEADS)))
    yield
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe


def js(viewer, script, *args):
    return viewer.driver.execute_script(script, *args)


def section(viewer, view):
    return viewer.driver.find_element(By.ID, view)


def data_attr(viewer, view, name):
    return section(viewer, view).get_attribute(f"data-{name}")


def click_token(viewer, position):
    viewer.driver.find_element(By.CSS_SELECTOR, f'#token-strip .bjv-tok[data-position="{position}"]').click()


def test_every_view_renders_offline_from_file(viewer):
    driver = viewer.driver
    assert driver.execute_script("return document.body.dataset.ready") == "1"
    for view in VIEWS:
        assert data_attr(viewer, view, "rendered") == "1", view
    # nothing was fetched: no scripts, styles, fonts or images from anywhere
    assert js(viewer, "return performance.getEntriesByType('resource').map(e => e.name)") == []
    html = open(viewer.url.removeprefix("file://"), encoding="utf-8").read()
    for needle in ("http://", "https://", " src=", "href=", "@import", "url("):
        assert needle not in html, needle
    # "</script>" as a token and in the title reached the page as text, and the script was not cut short
    assert driver.title == "synthetic </script> attention"
    assert driver.find_element(By.CSS_SELECTOR, '#token-strip .bjv-tok[data-position="1"]').text == "</script>"
    # two examples: the selector is shown; thumbnails L x N
    assert driver.find_element(By.ID, "example-select").is_displayed()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#model-view canvas.bjv-thumb")) == LAYERS * HEADS
    assert len(driver.find_elements(By.CSS_SELECTOR, "#head-view .bjv-head-toggle")) == HEADS


def test_thumbnail_click_selects_layer_and_head(viewer):
    driver = viewer.driver
    assert data_attr(viewer, "head-view", "heads") == ",".join(map(str, range(HEADS)))
    driver.find_element(By.CSS_SELECTOR, '#model-view canvas.bjv-thumb[data-layer="1"][data-head="2"]').click()
    assert data_attr(viewer, "head-view", "layer") == "1"
    assert data_attr(viewer, "head-view", "heads") == "2"
    assert Select(driver.find_element(By.ID, "layer-select")).first_selected_option.get_attribute("value") == "1"
    assert data_attr(viewer, "neuron-view", "layer") == "1" and data_attr(viewer, "neuron-view", "head") == "2"
    assert js(viewer, "return bertjaxView.state.detail") == {"layer": 1, "head": 2}
    detail = driver.find_element(By.ID, "head-detail")
    assert detail.is_displayed()
    # hovering the detail heatmap names query, key and probability
    ActionChains(driver).move_to_element(detail).perform()
    tooltip = driver.find_element(By.ID, "head-detail-tooltip")
    assert tooltip.is_displayed()
    assert "query" in tooltip.text and "key" in tooltip.text
    # the layer selector and the head toggles work too
    Select(driver.find_element(By.ID, "layer-select")).select_by_value("0")
    assert data_attr(viewer, "head-view", "layer") == "0"
    toggle0 = driver.find_element(By.CSS_SELECTOR, '#head-view .bjv-head-toggle[data-head="0"]')
    toggle0.click()
    assert data_attr(viewer, "head-view", "heads") == "0,2"
    ActionChains(driver).double_click(toggle0).perform()
    assert data_attr(viewer, "head-view", "heads") == "0"


def test_picking_a_token_updates_mlm_and_neuron_views(viewer):
    driver = viewer.driver
    raw = viewer.raws[0]
    guesses = viewer.data["examples"][0]["mlm"]["guesses"]
    before = data_attr(viewer, "mlm-view", "position")
    target = next(p for p in map(int, guesses) if str(p) != before)
    click_token(viewer, target)
    assert data_attr(viewer, "mlm-view", "position") == str(target)
    assert data_attr(viewer, "neuron-view", "position") == str(target)
    assert js(viewer, "return bertjaxView.state.position") == target
    assert "picked" in driver.find_element(
        By.CSS_SELECTOR, f'#token-strip .bjv-tok[data-position="{target}"]').get_attribute("class")
    mlm = section(viewer, "mlm-view")
    assert "masked, the model guesses" in mlm.text
    rows = mlm.find_elements(By.CSS_SELECTOR, ".bjv-guess")
    assert [r.find_element(By.CSS_SELECTOR, ".bjv-guess-token").text for r in rows] == [
        g[0] for g in guesses[str(target)]]
    # [SEP] has no guesses
    sep = raw["tokens"].index("[SEP]")
    click_token(viewer, sep)
    assert data_attr(viewer, "mlm-view", "position") == str(sep)
    assert "No guesses stored" in section(viewer, "mlm-view").text
    # the neuron view's softmax(q·k/√D) from the dequantised vectors agrees with the stored attention
    entry = viewer.data["examples"][0]["neurons"]
    for position in (target, sep):
        click_token(viewer, position)
        for head in range(HEADS):
            Select(driver.find_element(By.ID, "neuron-head-select")).select_by_value(str(head))
            assert data_attr(viewer, "neuron-view", "head") == str(head)
            q = decode_int8_vectors(entry["query"], entry["shape"])[0, position, head].astype(np.float64)
            k = decode_int8_vectors(entry["key"], entry["shape"])[0, :, head].astype(np.float64)
            scores = k @ q / np.sqrt(HEAD_DIM)
            soft = np.exp(scores - scores.max())
            soft /= soft.sum()
            stored = decode_uint8_probs(viewer.data["examples"][0]["attention"])[0, head, position]
            expected = np.abs(soft - stored).max()
            shown = float(data_attr(viewer, "neuron-view", "max-diff"))
            assert shown == pytest.approx(expected, abs=1e-4)
            assert shown < 0.05  # int8 q and k reproduce the attention


def test_head_view_hover_and_click_pick_a_query(viewer):
    driver = viewer.driver
    canvas = driver.find_element(By.CSS_SELECTOR, "#head-view canvas")
    w, h = canvas.size["width"], canvas.size["height"]
    top, row_height = 26, 20  # the head view's layout for T <= 64 (viewer.js: renderHeadView)
    target = 6
    dy = round(top + (target + 0.5) * row_height - h / 2)
    ActionChains(driver).move_to_element_with_offset(canvas, 10 - w // 2, dy).perform()  # hover: only its lines
    ActionChains(driver).move_to_element_with_offset(canvas, w // 2 - 10, dy).perform()  # a key: lines into it
    ActionChains(driver).move_to_element_with_offset(canvas, 10 - w // 2, dy).click().perform()
    assert js(viewer, "return bertjaxView.state.position") == target
    assert data_attr(viewer, "mlm-view", "position") == str(target)


def test_example_selector_switches_example(viewer):
    driver = viewer.driver
    raw = viewer.raws[1]
    Select(driver.find_element(By.ID, "example-select")).select_by_index(1)
    assert js(viewer, "return bertjaxView.state.example") == 1
    strip = driver.find_element(By.ID, "token-strip")
    assert [t.text for t in strip.find_elements(By.CSS_SELECTOR, ".bjv-tok")] == raw["tokens"]
    assert len(strip.find_elements(By.CSS_SELECTOR, ".bjv-pair-sep")) == 1
    assert len(strip.find_elements(By.CSS_SELECTOR, ".bjv-tok.seg-b")) == sum(1 for s in raw["segment_ids"] if s)
    for view in VIEWS:
        assert data_attr(viewer, view, "rendered") == "1", view
    # a packed row: the [CLS] summary offers each pair; picking a token of pair 1 shows pair 1's [CLS]
    pair_select = driver.find_element(By.ID, "cls-pair-select")
    assert pair_select.is_displayed() and len(Select(pair_select).options) == 2
    second_pair = raw["pair_ids"].index(1)
    click_token(viewer, second_pair + 1)
    assert data_attr(viewer, "cls-view", "pair") == "1"
    assert f"[CLS] at position {second_pair}" in section(viewer, "cls-view").text
    # the neuron view lists only the query's own pair's keys
    assert js(viewer, "return bertjaxView.state.position") == second_pair + 1
    Select(driver.find_element(By.ID, "example-select")).select_by_index(0)
    assert js(viewer, "return bertjaxView.state.example") == 0
    assert len(driver.find_elements(By.CSS_SELECTOR, "#token-strip .bjv-tok")) == len(viewer.raws[0]["tokens"])


def test_dequantised_attention_and_vectors_match_the_raw_arrays(viewer):
    got = js(viewer, f"""
        const v = bertjaxView, out = [];
        for (let e = 0; e < 2; e++) {{
          const att = [], q = [], k = [];
          for (let l = 0; l < {LAYERS}; l++)
            for (let h = 0; h < {HEADS}; h++) att.push(Array.from(v.attention(e, l, h)));
          const T = v.attention(e, 0, 0).length ** 0.5;
          for (let l = 0; l < {LAYERS}; l++) for (let t = 0; t < T; t++) for (let h = 0; h < {HEADS}; h++) {{
            q.push(Array.from(v.neurons(e, "query", l, t, h)));
            k.push(Array.from(v.neurons(e, "key", l, t, h)));
          }}
          out.push({{att, q, k}});
        }}
        return out;""")
    for example, (raw, entry) in enumerate(zip(viewer.raws, viewer.data["examples"])):
        T = len(raw["tokens"])
        att = np.asarray(got[example]["att"]).reshape(LAYERS, HEADS, T, T)
        np.testing.assert_array_less(np.abs(att - raw["probs_LxNxTxT"]), ATTENTION_ERROR + 1e-6)
        shape = entry["neurons"]["shape"]
        for which, name in (("q", "query"), ("k", "key")):
            vectors = np.asarray(got[example][which]).reshape(shape)
            np.testing.assert_allclose(vectors, decode_int8_vectors(entry["neurons"][name], shape), rtol=0, atol=1e-6)
            x = raw[f"{name}_LxTxNxD"]
            bound = np.abs(x).max(-1, keepdims=True) / 254 + 1e-6
            assert np.all(np.abs(vectors - x) <= bound)
        assert not np.any(np.asarray(got[example]["k"]).reshape(shape)[0, T - 1, 0])  # the zero key vector: scale 0


def test_set_guesses_hook_rerenders_mlm_view(viewer):
    position = js(viewer, "return bertjaxView.state.position")
    js(viewer, "bertjaxView.setGuesses(arguments[0], [['alpha', 0.75], ['</b>beta', 0.125]])", position)
    mlm = section(viewer, "mlm-view")
    assert [r.text for r in mlm.find_elements(By.CSS_SELECTOR, ".bjv-guess-token")] == ["alpha", "</b>beta"]
    js(viewer, "bertjaxView.setGuesses(arguments[0], null)", position)
    assert "No guesses stored" in section(viewer, "mlm-view").text


def test_screenshots_of_each_view(viewer):
    driver = viewer.driver
    size = driver.get_window_size()
    try:
        for example in (0, 1):
            js(viewer, f"bertjaxView.setExample({example}); bertjaxView.selectHead(1, 1);")
            # a window as tall as the page: element screenshots of views below the fold are not cut off
            height = js(viewer, "return document.documentElement.scrollHeight")
            driver.set_window_size(size["width"], min(height + 200, 8000))
            for view in VIEWS:
                path = os.path.join(viewer.shots, f"example{example}-{view}.png")
                assert section(viewer, view).screenshot(path), path
            driver.save_screenshot(os.path.join(viewer.shots, f"example{example}-page.png"))
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_fragment_works_inside_an_iframe(viewer):
    driver = viewer.driver
    driver.get(viewer.fragment_url)
    frame = driver.find_element(By.TAG_NAME, "iframe")
    assert frame.size["height"] >= 400
    driver.switch_to.frame(frame)
    try:
        _wait_ready(driver)
        for view in VIEWS:
            assert data_attr(viewer, view, "rendered") == "1", view
        assert js(viewer, "return performance.getEntriesByType('resource').length") == 0
    finally:
        driver.switch_to.default_content()
    # the notebook page can drive it through postMessage
    js(viewer, "document.querySelector('iframe').contentWindow.postMessage({bertjaxView: 'setLayer', args: [1]}, '*')")
    driver.switch_to.frame(frame)
    try:
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return bertjaxView.state.layer") == 1)
        assert data_attr(viewer, "head-view", "layer") == "1"
    finally:
        driver.switch_to.default_content()


# ---------------------------------------------------------------------------------------------------------------
# A real model's page (a small random BERT; BERTJAX_VIEWER_CHECKPOINT=<any checkpoint> for the docs' screenshots)

MODEL_TEXT_A, MODEL_TEXT_B = "the cat sat on the mat .", "it was warm in the sun ."
DOC_VIEWS = {"head-view": "head_view", "model-view": "model_view", "cls-view": "cls_view", "mlm-view": "mlm_view",
             "neuron-view": "neuron_view"}


@pytest.fixture(scope="module")
def model_page(tmp_path_factory):
    import html
    import re

    from _train_helpers import write_random_bert
    from bertjax.attention_viewer import attention_view
    from bertjax.convert import sources

    tmp = tmp_path_factory.mktemp("model_page")
    checkpoint = os.environ.get("BERTJAX_VIEWER_CHECKPOINT")
    if not checkpoint:
        checkpoint = tmp / "hf"
        write_random_bert(checkpoint, re.findall(r"\w+|[^\w\s]", f"{MODEL_TEXT_A} {MODEL_TEXT_B}"), hidden_size=32,
                          num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          max_position_embeddings=64)
    pretrained = sources.load_pretrained(checkpoint, allow_missing_heads=True)
    view = attention_view(pretrained, MODEL_TEXT_A, MODEL_TEXT_B, top_k=5)
    page = tmp / "model.html"
    view.save(page)
    # a notebook's live widget, as live.LiveAttentionView's script does it: the page (no guesses stored, as
    # show(..., live=True) makes it) in an iframe; picks arrive as messages, answers go back with setGuesses
    live_view = attention_view(pretrained, MODEL_TEXT_A, MODEL_TEXT_B, top_k=5, mlm_positions="none")
    live = tmp / "live.html"
    frame = f"<iframe style='width:100%;height:900px' srcdoc=\"{html.escape(live_view.html(live=True))}\"></iframe>"
    live.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><script>window.asked = [];"
                    "addEventListener('message', e => { if (e.data && e.data.bertjaxPicked) "
                    f"window.asked.push(e.data.bertjaxPicked); }});</script>{frame}</body></html>", encoding="utf-8")
    return types.SimpleNamespace(view=view, live_view=live_view, pretrained=pretrained, url=page.as_uri(),
                                 live_url=live.as_uri())


def test_a_models_page_draws_its_attention_maps(viewer, model_page):
    """What the page draws is attention_maps(...) of the same input, within the stated quantisation error."""
    from bertjax.visualization import attention_maps

    driver = viewer.driver
    driver.get(model_page.url)
    _wait_ready(driver)
    row, config = model_page.view.rows[0], model_page.pretrained.config
    maps = np.asarray(attention_maps(config, model_page.pretrained.params, row.input_ids[None], None,
                                     row.segment_ids[None]))[:, 0]
    for layer in range(config.num_hidden_layers):
        for head in range(config.num_attention_heads):
            drawn = np.array(js(viewer, "return Array.from(bertjaxView.attention(0, arguments[0], arguments[1]))",
                                layer, head)).reshape(maps.shape[-2:])
            assert np.abs(drawn - maps[layer, head]).max() <= ATTENTION_ERROR + 1e-6, (layer, head)
    # click a head in the model view, pick a token: the views follow (the docs' screenshots)
    last = config.num_hidden_layers - 1
    driver.find_element(By.CSS_SELECTOR, f'#model-view [data-layer="{last}"][data-head="1"]').click()
    assert data_attr(viewer, "head-view", "layer") == str(last) and data_attr(viewer, "head-view", "heads") == "1"
    click_token(viewer, 2)
    assert data_attr(viewer, "mlm-view", "position") == "2" and data_attr(viewer, "neuron-view", "position") == "2"
    mlm = model_page.view.data["examples"][0]["mlm"]
    if "note" in mlm:                                       # a checkpoint without the masked-LM head says so
        assert "masked-LM head" in section(viewer, "mlm-view").text
    else:
        assert mlm["guesses"]["2"][0][0] in section(viewer, "mlm-view").text
    size = driver.get_window_size()
    try:
        driver.set_window_size(size["width"], min(js(viewer, "return document.documentElement.scrollHeight") + 200,
                                                  8000))
        for view, name in DOC_VIEWS.items():
            assert section(viewer, view).screenshot(os.path.join(viewer.shots, f"{name}.png"))
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_a_live_page_asks_the_kernel_for_the_guesses_of_a_picked_token(viewer, model_page):
    """show(..., live=True): no guesses are stored; a pick is posted to the notebook, whose answer is shown."""
    driver = viewer.driver
    driver.get(model_page.live_url)
    frame = driver.find_element(By.TAG_NAME, "iframe")
    driver.switch_to.frame(frame)
    try:
        _wait_ready(driver)
        click_token(viewer, 3)
        assert "Asking the model" in section(viewer, "mlm-view").text
    finally:
        driver.switch_to.default_content()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.asked.length") == 1)
    assert js(viewer, "return window.asked[0]") == {"example": 0, "position": 3}
    answer = model_page.live_view.guesses(3)[3]                            # what the kernel computes
    js(viewer, "document.querySelector('iframe').contentWindow.postMessage("
               "{bertjaxView: 'setGuesses', args: [3, arguments[0], 0]}, '*')", answer)
    driver.switch_to.frame(frame)
    try:
        WebDriverWait(driver, 10).until(lambda d: "masked, the model guesses" in section(viewer, "mlm-view").text)
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#mlm-view .bjv-guess-token")]
        assert shown == [token for token, _ in answer]
    finally:
        driver.switch_to.default_content()
