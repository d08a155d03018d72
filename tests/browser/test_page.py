"""The drawing page in a real browser: headless Chromium (Debian's ``chromium``) via Playwright.

A small digit model is trained here on a few thousand MNIST images, ``clearconv
serve`` runs on a free loopback port, the test draws a "1" (a vertical stroke)
and a "0" (a ring) on the canvas with mouse events, and reads the predicted
class back from the page. A small untrained GoogLeNet-like net (no data needed)
shows each Inception branch's maps as a labelled row. Screenshots go to ``$ARTIFACTS_DIR`` (default
``tests/browser/artifacts/``).

Needs: ``apt-get install chromium`` and ``pip install playwright`` (never
``playwright install``: the system Chromium is used through executable_path).
"""

import contextlib
import itertools
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
pytest.importorskip("starlette", reason="pip install 'clearconv[serve]'")
pytest.importorskip("uvicorn", reason="pip install 'clearconv[serve]'")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "tests" / "browser" / "artifacts"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def mnist_root() -> Path:
    for root in (os.environ.get("CLEARCONV_DATA"), ROOT.parent / "shared" / "datasets"):
        if root and (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").exists():
            return Path(root)
    pytest.skip(
        f"MNIST not found in $CLEARCONV_DATA or {ROOT.parent / 'shared' / 'datasets'}: "
        "set CLEARCONV_DATA to a folder holding mnist/ (IDX files)"
    )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small CNN trained on 4,000 MNIST digits for 2 epochs (~10 s on one core)."""
    from clearconv import Model, nn, save
    from clearconv.data import MNIST_CLASSES, load_mnist
    from clearconv.train import fit

    ds = load_mnist(mnist_root(), "train", download=False)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(ds.labels))[:4000]
    x, y = ds.images[idx], ds.labels[idx]
    x = x[:, None] if x.ndim == 3 else x
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10, rng=rng),
    )
    model = Model(
        net, (1, 28, 28), MNIST_CLASSES, mean=[0.1307], std=[0.3081], meta={"dataset": "mnist"}
    )
    fit(model, (x, y), epochs=2, batch_size=64, lr=2e-3, progress=False)
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    save(model, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(model_file):
    """``clearconv serve MODEL_FILE`` on a free port; yields its URL, stops it after."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearconv", "serve", str(model_file), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(url + "/api/model", timeout=1) as resp:
                    resp.read()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"clearconv serve exited: {proc.stdout.read().decode()}")
                time.sleep(0.1)
        else:
            pytest.fail("clearconv serve did not answer within 15 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def server(model_file):
    with serving(model_file) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url: str):
    pg = browser.new_page(viewport={"width": 1200, "height": 900})
    pg.goto(url + "/")
    pg.wait_for_function("document.getElementById('model-info').textContent.includes('classes')")
    return pg


@pytest.fixture(scope="module")
def page(browser, server):
    pg = open_page(browser, server)
    yield pg
    pg.close()


def draw(page, points):
    box = page.locator("#canvas").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for px, py in points[1:]:
        page.mouse.move(x0 + px, y0 + py, steps=2)
    page.mouse.up()


def prediction_after_drawing(page, points) -> str:
    page.click("#clear")
    draw(page, points)
    # busy stays "1" until the answer for the last stroke is shown
    page.wait_for_function(
        "document.body.dataset.busy === '0'"
        " && document.getElementById('prediction').dataset.class !== ''"
    )
    return page.locator("#prediction").get_attribute("data-class")


def test_draw_one_and_zero(page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    one = [(140, 40 + 10 * i) for i in range(21)]
    got = prediction_after_drawing(page, one)
    page.screenshot(path=str(ARTIFACTS / "draw-1.png"), full_page=True)
    assert got == "1"
    assert page.locator("#prob-1").get_attribute("class") == "top"
    assert page.locator("#layers img").count() > 20  # input + every layer's maps

    ring = [
        (140 + 60 * math.sin(t), 140 - 90 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 40)
    ]
    got = prediction_after_drawing(page, ring)
    page.screenshot(path=str(ARTIFACTS / "draw-0.png"), full_page=True)
    assert got == "0"
    assert page.locator("#error").text_content() == ""


@pytest.fixture(scope="module")
def branched_page(browser, tmp_path_factory):
    """The page over an untrained net with a Fire module and an Inception block."""
    from clearconv import Model, nn, save, zoo

    cfg = zoo._seq(zoo._conv(8, 3), zoo.RELU, *zoo._fire(4, 4, 6), zoo._pool(2, 2),
                   zoo._inception(4, 4, 8, 2, 4, 4), zoo.GLOBAL_POOL, zoo.FLATTEN,
                   zoo._linear(10))  # fmt: skip
    net = nn.from_config(cfg, (1, 28, 28), rng=np.random.default_rng(0))
    path = tmp_path_factory.mktemp("branched") / "inception.npz"
    save(Model(net, (1, 28, 28), [str(i) for i in range(10)]), path)
    with serving(path) as url:
        pg = open_page(browser, url)
        yield pg
        pg.close()


def test_page_shows_each_branch_of_a_merge(branched_page):
    page = branched_page
    prediction_after_drawing(page, [(140, 40 + 10 * i) for i in range(21)])
    fire = page.locator("#branch-4-0").locator("xpath=..")  # the Fire module's two rows
    assert fire.locator(":scope > div.branch").count() == 2
    inception = page.locator("#branch-6-0").locator("xpath=..")
    rows = inception.locator(":scope > div.branch")
    assert rows.count() == 4
    expected = [
        ("6.0", "Conv2d 1x1 → BatchNorm2d → ReLU", 4),
        ("6.1", "Conv2d 1x1 → BatchNorm2d → ReLU → Conv2d 3x3 → BatchNorm2d → ReLU", 8),
        ("6.2", "Conv2d 1x1 → BatchNorm2d → ReLU → Conv2d 3x3 → BatchNorm2d → ReLU", 4),
        ("6.3", "MaxPool2d 3x3 → Conv2d 1x1 → BatchNorm2d → ReLU", 4),
    ]
    boxes = []
    for i, (name, label, maps) in enumerate(expected):
        row = rows.nth(i)
        head = row.locator("h4").inner_text()
        assert head == f"branch {i + 1} of 4 ({name}): {label} → {maps}×13×13"
        assert row.locator("div.maps img").count() == maps
        assert row.locator("div.maps img").first.evaluate("i => i.naturalWidth") >= 13
        boxes.append(row.bounding_box())
    # labelled rows one under the other, indented from the layer's left edge
    assert all(a["y"] + a["height"] <= b["y"] + 0.5 for a, b in itertools.pairwise(boxes))
    layer_left = inception.locator("xpath=..").bounding_box()["x"]
    assert all(b["x"] > layer_left for b in boxes)
    # a Concat's own stacked maps are not drawn again above its rows
    concat_layer = inception.locator("xpath=..")
    assert concat_layer.locator(":scope > div.maps").count() == 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    concat_layer.screenshot(path=str(ARTIFACTS / "page-branches.png"))
