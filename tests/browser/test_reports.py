"""The inspect and X/O reports as a person sees them: headless Chromium (Debian's ``chromium``).

``clearconv inspect`` (a small colour ResNet on a 90x60 picture) and ``clearconv
xo`` write their HTML files; Chromium opens them from disk and the tests measure
what is drawn: the user's picture at its own size and colours next to the
network's view, filters at 8x with labels, colour scales, full residual
headings; the X/O epochs heading, the vote strips' axis lined up under the
strips, readable numbers; a small GoogLeNet's Inception blocks, each branch a labelled
row of its own maps. Screenshots of each part go to ``$ARTIFACTS_DIR``
(default ``tests/browser/artifacts/``); copies are kept in ``tests/screenshots/``.

Needs: ``apt-get install chromium`` and ``pip install playwright`` (never
``playwright install``: the system Chromium is used through executable_path).
"""

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "tests" / "browser" / "artifacts"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
RED, GREEN, BLUE = (200, 40, 40), (40, 160, 60), (30, 60, 220)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    from clearconv import Model, nn, save, zoo
    from clearconv.cli import main

    tmp = tmp_path_factory.mktemp("reports")
    net, shape = zoo.build("resnet", rng=np.random.default_rng(0))
    model = Model(net, shape, [f"c{i}" for i in range(10)], mean=[0.5] * 3, std=[0.25] * 3)
    save(model, tmp / "resnet.npz")
    a = np.zeros((60, 90, 3), np.uint8)
    a[:30], a[30:], a[20:45, 30:60] = RED, GREEN, BLUE
    Image.fromarray(a).save(tmp / "photo.png")
    argv = ["inspect", tmp / "resnet.npz", "--image", tmp / "photo.png", "--out", tmp / "r.html"]
    assert main([str(x) for x in argv]) == 0
    xo = ["xo", "--out", str(tmp / "xo.html"), "--epochs", "12", "--samples", "100"]
    assert main(xo) == 0
    # a small GoogLeNet: stem, two Inception blocks (4 branches each), global pool
    cfg = zoo._seq(*zoo._bconv(8, 3, padding=1), zoo._pool(2, 2),
                   zoo._inception(4, 4, 8, 2, 4, 4), zoo._inception(8, 4, 8, 2, 4, 4),
                   zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(3))  # fmt: skip
    net = nn.from_config(cfg, (3, 32, 32), rng=np.random.default_rng(0))
    save(Model(net, (3, 32, 32), ["a", "b", "c"]), tmp / "inception.npz")
    argv = ["inspect", tmp / "inception.npz", "--image", tmp / "photo.png", "--out", tmp / "i.html"]
    assert main([str(x) for x in argv]) == 0
    return {"inspect": tmp / "r.html", "xo": tmp / "xo.html", "inception": tmp / "i.html"}


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1150, "height": 900})
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


def page_clip(locator, width: int, height: int) -> dict:
    """A clip for a full-page screenshot starting just above ``locator`` (page coordinates)."""
    top = locator.evaluate("e => e.getBoundingClientRect().top + window.scrollY")
    return {"x": 0, "y": max(0.0, top - 10), "width": width, "height": height}


def shot(locator, name: str) -> np.ndarray:
    """Screenshot of one element into ARTIFACTS; returns its pixels (RGB)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    locator.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB"))


def test_inspect_input_is_the_users_picture_then_the_networks_view(browser, reports):
    page = open_page(browser, reports["inspect"])
    figures = page.locator("h2:has-text('The input') + p + div.maps figure")
    assert figures.count() == 2
    given, seen = figures.nth(0).locator("img"), figures.nth(1).locator("img")
    size = given.evaluate("i => [i.naturalWidth, i.naturalHeight, i.width, i.height]")
    assert size[0] * 2 == size[1] * 3  # 90x60 (possibly enlarged): the file's proportions
    seen_size = seen.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert seen_size[0] == seen_size[1]  # the network's square 32x32 view
    px = shot(given, "inspect-given.png")
    h, w = px.shape[:2]
    # the colours of the file, where they are in the file (1 px border aside)
    assert np.abs(px[h // 6, w // 10].astype(int) - RED).max() <= 8
    assert np.abs(px[h * 5 // 6, w // 10].astype(int) - GREEN).max() <= 8
    assert np.abs(px[h // 2, w // 2].astype(int) - BLUE).max() <= 8
    shot(page.locator("h2:has-text('The input') + p + div.maps"), "inspect-input.png")
    page.close()


def test_inspect_filters_scales_and_residual_headings(browser, reports):
    page = open_page(browser, reports["inspect"])
    # colour scales: a visible gradient bar with two numbers, before each stage's maps
    bars = page.locator(".cscale")
    assert bars.count() >= 10
    first = bars.nth(0)
    assert "linear-gradient" in first.locator(".cbar").evaluate(
        "e => getComputedStyle(e).backgroundImage"
    )
    assert first.locator(".cbar").bounding_box()["width"] >= 150
    lo, hi = (float(t) for t in first.locator("span:not(.cbar)").all_text_contents())
    assert lo < hi
    # filters: each 3x3 kernel drawn at 8x or more, rows and columns labelled
    colour = page.locator("h3:has-text('0: Conv2d(3, 16') ~ div.maps img").first
    assert colour.bounding_box()["width"] >= 3 * 8
    table = page.locator("table.filters").first
    assert table.locator("th", has_text="in 0").count() == 1
    assert table.locator("th", has_text="filter 0").count() == 1
    kernel = table.locator("td img").first
    assert kernel.bounding_box()["width"] >= 3 * 8
    shot(table, "inspect-filters.png")
    # residual stages: the heading says what is added, the whole block is listed
    heads = page.locator("h2", has_text="Residual block")
    texts = heads.all_text_contents()
    assert any("shortcut(x) + block(x), downsampling shortcut" in t for t in texts)
    assert any("x + block(x)" in t for t in texts)
    stage = page.locator("h2", has_text="downsampling shortcut").first
    assert (
        "(shortcut): Sequential(" in stage.locator("xpath=following-sibling::pre[1]").inner_text()
    )
    page.screenshot(
        path=str(ARTIFACTS / "inspect-residual.png"),
        clip=page_clip(stage, 1150, 560),
        full_page=True,
    )
    page.close()


def test_xo_report_epochs_axis_and_numbers(browser, reports):
    page = open_page(browser, reports["xo"])
    assert page.locator("h3", has_text="Training: epochs 3-12 of 12 (the last 10)").count() == 1
    # numbers in the grids: at least 13 px
    cell = page.locator("table.grid td").first
    assert float(cell.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 13
    # the axis under each votes strip spans exactly the strip: three ticks of 16 values
    strips = page.locator("div.strips")
    assert strips.count() == 2
    votes = strips.nth(0)
    strip = votes.locator(".strip img").first.bounding_box()
    ticks = votes.locator(".ticks span")
    assert ticks.count() == 3
    left, right = ticks.nth(0).bounding_box(), ticks.nth(2).bounding_box()
    assert abs(left["x"] - strip["x"]) <= 1.5
    assert abs(right["x"] + right["width"] - (strip["x"] + strip["width"])) <= 1.5
    assert votes.locator(".cscale").count() == 1
    sentence = page.locator("p", has_text="Softmax depends only on how far apart")
    assert sentence.count() == 1 and "1 / (1 + exp(" in sentence.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    votes_head = page.locator("h2", has_text="6. Fully connected")
    page.screenshot(
        path=str(ARTIFACTS / "xo-votes.png"), clip=page_clip(votes_head, 1150, 640), full_page=True
    )
    pool_head = page.locator("h2", has_text="5. Max pooling")
    page.screenshot(
        path=str(ARTIFACTS / "xo-numbers.png"), clip=page_clip(pool_head, 800, 360), full_page=True
    )
    page.close()


def test_inspect_shows_every_branch_of_each_inception_block(browser, reports):
    page = open_page(browser, reports["inception"])
    for stage, channels in (("4", [4, 8, 4, 4]), ("5", [8, 8, 4, 4])):
        rows = page.locator(f"h2:has-text('({stage})') ~ div.branches").first.locator(
            ":scope > div.branch"
        )
        assert rows.count() == 4
        boxes = [rows.nth(i).bounding_box() for i in range(4)]
        # one row per branch, stacked top to bottom, none overlapping the next
        assert all(a["y"] + a["height"] <= b["y"] + 0.5 for a, b in itertools.pairwise(boxes))
        for i, row in enumerate(rows.all()):
            head = row.locator("h3").inner_text()
            assert head.startswith(f"Branch {i + 1} of 4 ({stage}.{i}):"), head
            assert head.endswith(f"output {channels[i]}x16x16"), head
            imgs = row.locator("div.maps img")
            assert imgs.count() == channels[i]
            assert imgs.first.bounding_box()["width"] >= 16  # a 16x16 map, drawn at least 1:1
            # the row is marked by its coloured left border
            assert row.evaluate("e => getComputedStyle(e).borderLeftWidth") == "4px"
    pool = page.locator("#branch-4-3 h3").inner_text()
    assert "MaxPool2d 3x3 → Conv2d 1x1 → BatchNorm2d → ReLU" in pool
    px = shot(page.locator("h2:has-text('(4)') ~ div.branches").first, "inspect-branches.png")
    # the border's colour runs down the left of the rows; the maps are drawn (not blank)
    border = np.abs(px[:, 1].astype(int) - (158, 202, 225)).max(axis=1) <= 8
    assert border.mean() >= 0.9
    assert px.std() > 20
    page.close()
