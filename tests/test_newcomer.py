"""What a newcomer trips over (issue 24, items 1, 10, 12-14, 16-21): each test follows one step
of the README path and checks what the person sees: counts, labels, messages, pictures."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from clearconv import Model, nn, save, zoo
from clearconv.cli import CLIError, main
from clearconv.summary import summary

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "clearconv"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


class Page(HTMLParser):
    """The <img> tags (attributes), the headings and the text of a report."""

    def __init__(self, html: str):
        super().__init__()
        self.imgs: list[dict] = []
        self.headings: list[str] = []
        self._in: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag in ("h2", "h3"):
            self._in, self._text = tag, ""

    def handle_data(self, data):
        if self._in:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._in:
            self.headings.append(self._text.strip())
            self._in = None


def pixels(src: str) -> np.ndarray:
    """The RGB pixels of an inlined PNG."""
    data = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def api_client(model):
    """Starlette's TestClient over ``clearconv serve``'s app (skipped without the extra)."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    import warnings

    with warnings.catch_warnings():  # starlette's notice about httpx2, as in test_serve.py
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from clearconv.serve.app import create_app

    return TestClient(create_app(model))


@pytest.fixture(scope="module")
def xo_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("xo") / "xo.npz"
    assert (
        main(
            ["train", "--model", "xo", "--dataset", "xo", "--epochs", "1", "-q", "--out", str(path)]
        )
        == 0
    )
    return path


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> Path:
    """The zoo's small ResNet (3x32x32, projection shortcuts), untrained."""
    net, shape = zoo.build("resnet", rng=np.random.default_rng(0))
    model = Model(net, shape, [f"c{i}" for i in range(10)], mean=[0.5] * 3, std=[0.25] * 3)
    path = tmp_path_factory.mktemp("resnet") / "resnet.npz"
    save(model, path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 90x60 colour picture: red top, green bottom, a blue box."""
    a = np.zeros((60, 90, 3), np.uint8)
    a[:30], a[30:], a[20:45, 30:60] = (200, 40, 40), (40, 160, 60), (30, 60, 220)
    path = tmp_path_factory.mktemp("pic") / "photo.png"
    Image.fromarray(a).save(path)
    return path


# -- 1: summary counts the shortcut layers --------------------------------------


def test_summary_resnet18_has_torchvisions_parameter_count(capsys):
    net, shape = zoo.build("resnet18", init=False)
    s = summary(net, shape)
    # torchvision.models.resnet18(): sum(p.numel() for p in m.parameters()) == 11,689,512
    assert s.total_params == 11_689_512 == sum(p.size for p in net.parameters())
    names = [r.name for r in s.rows]
    assert {"8.shortcut.0", "8.shortcut.1", "12.shortcut.0", "16.shortcut.0"} <= set(names)
    adds = {r.name: r.layer for r in s.rows if r.layer.startswith("Residual add")}
    assert adds["8"] == "Residual add: shortcut(x) + block(x), downsampling shortcut"
    assert adds["4"] == "Residual add: x + block(x)"
    # a shortcut row comes after its block's rows and before the add
    assert names.index("8.block.4") < names.index("8.shortcut.0") < names.index("8")
    code, out, err = run(capsys, "summary", "resnet18")
    assert code == 0, err
    assert "Total params: 11,689,512" in out and "Residual (x + block(x))" not in out


def test_summary_json_batch_is_null_and_api_model_agrees(capsys, colour_model):
    code, out, err = run(capsys, "summary", colour_model, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert all(r["output_shape"][0] is None for r in rep["rows"])
    model = __import__("clearconv").load(colour_model)
    assert rep["total_params"] == sum(p.size for p in model.parameters())
    api = api_client(model).get("/api/model").json()
    assert sum(r["params"] for r in api["layers"]) == rep["total_params"]
    assert any(".shortcut." in r["name"] for r in api["layers"])
    assert all(r["output_shape"][0] is None for r in api["layers"])


# -- 10: install hints ------------------------------------------------------------


def test_install_hints_name_pypi_and_a_checkout():
    from clearconv._extras import install_hint

    hint = install_hint("serve")
    assert 'pip install "clearconv[serve]"' in hint and 'pip install -e ".[serve]"' in hint
    # every message that tells people what to pip install goes through install_hint
    pattern = re.compile(r"pip install ['\"]?(clearconv|convnet)\[")
    offenders = [
        str(p.relative_to(ROOT))
        for p in SRC.rglob("*.py")
        if p.name != "_extras.py" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'pip install -e ".[all]"' in readme and 'pip install "clearconv[all]"' in readme
    assert "convnet[" not in readme


def test_serve_without_uvicorn_says_both_installs(capsys, monkeypatch, xo_model):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    code, _, err = run(capsys, "serve", xo_model)
    line = one_line(err)
    assert code == 2
    assert 'pip install "clearconv[serve]"' in line and 'pip install -e ".[serve]"' in line


# -- 12, 13: the inspect report --------------------------------------------------


def test_inspect_shows_the_users_picture_then_what_the_network_sees(
    capsys, tmp_path, colour_model, photo
):
    out = tmp_path / "r.html"
    code, _, err = run(capsys, "inspect", colour_model, "--image", photo, "--out", out)
    assert code == 0, err
    page = Page(out.read_text(encoding="utf-8"))
    given, seen = page.imgs[0], page.imgs[1]
    assert "your image (90x60 pixels)" in given["alt"]
    assert "what the network sees (32x32)" in seen["alt"]
    g, s = pixels(given["src"]), pixels(seen["src"])
    assert g.shape[:2] == (60, 90)  # the file's own size and proportions
    assert s.shape[0] == s.shape[1] and s.shape[0] % 32 == 0  # 32x32, drawn enlarged
    # the colours as given: the file's exact red, green and blue are all there
    for colour in ((200, 40, 40), (40, 160, 60), (30, 60, 220)):
        assert np.all(g == colour, axis=-1).sum() > 100
    # in a grey digit model's report, the picture is the user's (white paper) and the
    # network's view is MNIST-like (dark background): two different pictures
    pic = np.full((40, 30), 255, np.uint8)
    pic[5:35, 13:17] = 0
    Image.fromarray(pic).save(tmp_path / "one.png")
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 26 * 26, 10, rng=np.random.default_rng(1)),
    )
    save(Model(net, (1, 28, 28), [str(i) for i in range(10)]), tmp_path / "d.npz")
    run(capsys, "inspect", tmp_path / "d.npz", "--image", tmp_path / "one.png", "--out", out)
    page = Page(out.read_text(encoding="utf-8"))
    g, s = pixels(page.imgs[0]["src"]), pixels(page.imgs[1]["src"])
    assert g.mean() > 200 and s.mean() < 80


def test_inspect_filters_scales_and_residual_headers(tmp_path, colour_model, photo):
    from clearconv import load
    from clearconv.viz.featuremaps import trace
    from clearconv.viz.inputs import decode_image, prepare
    from clearconv.viz.report import inspect_report

    model = load(colour_model)
    picture = decode_image(photo.read_bytes())
    raw = prepare(model, picture)
    html = inspect_report(model, raw, original=picture)
    page = Page(html)
    # filters: every kernel drawn at least 8x (3x3 kernels -> 30 px), labelled
    first = model.net[0]
    kernels = [i for i in page.imgs if i.get("alt", "").startswith("filter ")]
    assert len(kernels) == first.out_channels  # colour kernels: one picture per filter
    assert all(int(i["width"]) >= 8 * 3 for i in kernels)
    assert "<th>in 0</th>" in html and "<th>filter 0</th>" in html
    # colour scales: one per stage drawn as maps, labelled with the layer's min and max
    outs = trace(model, model.preprocess(raw))
    # (and one per branch row: a residual block's own output, and its shortcut's)
    rows = sum(len(o.branches) for o in outs)
    assert rows == 6 + 2  # six residual blocks, two with a downsampling shortcut
    assert html.count('class="cscale"') == len(outs) - 1 + rows
    lo, hi = float(outs[0].output.min()), float(outs[0].output.max())
    assert f"<span>{lo:.3g}</span>" in html and f"<span>{hi:.3g}</span>" in html
    # residual stages: full headings and every layer inside, not "Residual("
    heads = [h for h in page.headings if h.startswith("Stage")]
    assert any("Residual block: shortcut(x) + block(x), downsampling shortcut" in h for h in heads)
    assert any("Residual block: x + block(x)" in h for h in heads)
    assert not any(h.rstrip().endswith("Residual(") for h in heads)
    assert "(shortcut): Sequential(" in html


# -- 14: the X/O report ------------------------------------------------------------


def test_xo_report_says_which_epochs_and_why_close_scores_are_near_even(capsys, tmp_path):
    out = tmp_path / "xo.html"
    code, stdout, err = run(capsys, "xo", "--out", out, "--epochs", 12, "--samples", 100)
    assert code == 0, err
    html = out.read_text(encoding="utf-8")
    assert "Training: epochs 3-12 of 12 (the last 10)" in html
    # the vote strips: an axis naming the three pooled maps, and a colour scale
    for ticks in ("values 1-16", "values 17-32", "values 33-48"):
        assert html.count(ticks) == 2
    assert html.count('class="cscale"') == 2
    # the sentence computes P(X) from the score difference, as the table does
    from clearconv.viz.xo import walkthrough

    w = walkthrough()
    d = float(w["scores"][0, 0] - w["scores"][0, 1])
    assert f"1 / (1 + exp(-{d:.3f})) = {w['probabilities'][0, 0]:.3f}" in html
    assert f"canonical X: P(X)={w['probabilities'][0, 0]:.3f}" in stdout
    code, _, _ = run(capsys, "xo", "--out", tmp_path / "b.html", "--epochs", 3, "--samples", 50)
    assert "Training: epochs 1-3 of 3</h3>" in (tmp_path / "b.html").read_text(encoding="utf-8")


# -- 16: messages that say what came and what was expected -----------------------


def test_threads_zero_names_the_option_and_value(capsys):
    code, _, err = run(capsys, "summary", "lenet5", "--threads", "0")
    line = one_line(err)
    assert code == 2
    assert "--threads" in line and "'0'" in line and "at least 1" in line
    assert "blas_threads" not in line


def test_a_fake_png_is_named_and_explained_everywhere(capsys, tmp_path, xo_model):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is no picture")
    for argv in (
        ("inspect", xo_model, "--image", fake, "--out", tmp_path / "r.html"),
        ("predict", xo_model, fake),
    ):
        code, _, err = run(capsys, *argv)
        line = one_line(err)
        assert code == 2 and "fake.png" in line and "expected PNG, JPEG" in line
        assert "BytesIO" not in line and "0x" not in line
    from clearconv import load

    r = api_client(load(xo_model)).post(
        "/api/predict", content=fake.read_bytes(), headers={"content-type": "image/png"}
    )
    assert r.status_code == 400
    assert "expected PNG, JPEG" in r.json()["error"] and "BytesIO" not in r.json()["error"]


def test_output_paths_are_checked_before_the_work(capsys, tmp_path, xo_model, photo):
    cases = [
        (
            ("inspect", xo_model, "--image", photo, "--out", "/nonexistent/r.html"),
            "--out /nonexistent/r.html: the folder /nonexistent does not exist",
        ),
        (("inspect", xo_model, "--image", photo, "--out", tmp_path), "is a folder"),
        (("xo", "--out", "/nonexistent/x.html"), "the folder /nonexistent does not exist"),
        (("export", "lenet5", "/nonexistent/x.onnx"), "/nonexistent/x.onnx: the folder"),
        (("import", tmp_path / "in.onnx", "/nonexistent/o.npz"), "ONNX file not found"),
    ]
    for argv, expected in cases:
        code, _, err = run(capsys, *argv)
        line = one_line(err)
        assert code == 2 and expected in line, line
        assert "[Errno" not in line and ".tmp" not in line
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_os_errors_read_as_path_and_reason():
    from clearconv.cli import user_message
    from clearconv.data.download import network_reason

    assert user_message(PermissionError(13, "Permission denied", "/etc/x")) == (
        "/etc/x: permission denied"
    )
    assert user_message(OSError(28, "cannot write m.npz: No space left on device")) == (
        "cannot write m.npz: No space left on device"
    )
    err = urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
    assert network_reason(err, "https://host.example/mnist/") == (
        "no network: cannot resolve host.example"
    )


# -- 17: serve binds first -----------------------------------------------------------


def test_serve_on_a_busy_port_is_one_line_and_never_says_serving(capsys, xo_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "serve", xo_model, "--port", port)
    line = one_line(err)
    assert code == 2 and f"127.0.0.1:{port}" in line and "in use" in line
    assert "serving" not in out
    code, out, err = run(capsys, "serve", xo_model, "--host", "no-such-host.invalid")
    assert code == 2 and "--host 'no-such-host.invalid'" in one_line(err) and out == ""


def test_serve_prints_the_address_it_is_bound_to(xo_model):
    pytest.importorskip("uvicorn")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearconv", "serve", str(xo_model), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # printed only once the socket is bound
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url and int(url.group(1)) > 0, line
        for _ in range(100):  # the socket already listens; uvicorn starts answering
            try:
                with urllib.request.urlopen(url.group(0) + "api/model", timeout=2) as r:
                    assert json.load(r)["class_names"] == ["X", "O"]
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("no answer from the port serve printed")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


# -- 18: --debug anywhere, did-you-mean, Flatten hint ---------------------------------


def test_debug_works_before_and_after_the_command(capsys):
    assert main(["summary", "missing.npz"]) == 2
    for argv in (["--debug", "summary", "missing.npz"], ["summary", "missing.npz", "--debug"]):
        with pytest.raises(CLIError, match="model file not found"):
            main(argv)
    capsys.readouterr()


def test_architecture_typos_and_a_missing_flatten_get_hints(capsys, tmp_path):
    from clearconv.nn.config import from_config

    layers = [{"type": "Conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "Relu"}]
    with pytest.raises(ValueError, match=r"unknown layer type 'Relu' \(did you mean 'ReLU'\?\)"):
        from_config({"type": "Sequential", "layers": layers}, (1, 8, 8))
    with pytest.raises(ValueError, match="did you mean 'MaxPool2d'"):
        from_config({"type": "Sequential", "layers": [{"type": "Maxpool2D"}]}, (1, 8, 8))
    layers[1] = {"type": "ReLU"}
    (tmp_path / "net.json").write_text(
        json.dumps(
            {"input_shape": [1, 8, 8], "layers": [*layers, {"type": "Linear", "out_features": 3}]}
        )
    )
    code, _, err = run(capsys, "summary", tmp_path / "net.json")
    line = one_line(err)
    assert code == 2 and "add a Flatten layer before it" in line and "(N, 144)" in line
    # with in_features written out, the same hint
    layers.append({"type": "Linear", "in_features": 144, "out_features": 3})
    with pytest.raises(ValueError, match="add a Flatten layer before it"):
        from_config({"type": "Sequential", "layers": layers}, (1, 8, 8))


# -- 19: --help ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, seeded",
    [
        ("train", True),
        ("evaluate", True),
        ("xo", True),
        ("export", True),
        ("summary", False),
        ("import", False),
        ("serve", False),
        ("datasets", False),
        ("predict", False),
        ("inspect", False),
        ("recipe", False),
    ],
)
def test_help_offers_seed_only_where_it_seeds(capsys, command, seeded):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert ("--seed" in out) is seeded
    assert "at most 2 per process" not in out and "best here" not in out
    assert "--debug" in out


def test_train_help_and_recipe_show_the_defaults(capsys):
    code, out, _ = run(capsys, "train", "--help")
    options = " ".join(out.split("options:")[1].split("defaults per model")[0].split())
    assert f"--model MODEL zoo name ({', '.join(zoo.NAMES)})" in options
    for option in ("--epochs EPOCHS", "--lr LR", "--optimizer {sgd,adam,adamw}"):
        after = options.split(option, 1)[1]
        assert after.split(" --", 1)[0].endswith("(default: the model's recipe, listed below)")
    table = out.split("defaults per model")[1]
    for name in zoo.NAMES:
        r = zoo.recipe(name)
        row = next(line.split() for line in table.splitlines() if line.split()[:1] == [name])
        assert row[1:4] == [str(r["epochs"]), str(r["batch_size"]), r["optimizer"]]
        assert float(row[4]) == r["lr"]
    code, out, _ = run(capsys, "recipe", "mnist", "--json")
    assert code == 0 and {k: v for k, v in json.loads(out).items() if k != "model"} == zoo.recipe(
        "mnist"
    )
    code, out, _ = run(capsys, "recipe", "lenet5")
    assert re.search(r"--epochs\s+1\n", out) and re.search(r"--lr\s+0.003\n", out)
    code, out, _ = run(capsys, "summary", "--help")
    assert all(name in out for name in zoo.NAMES)


# -- 20: the confusion matrix ------------------------------------------------------------


def test_confusion_matrix_rows_and_columns_labelled_alike(capsys, xo_model):
    from clearconv.cli._common import confusion_table

    code, out, err = run(capsys, "evaluate", xo_model, "--dataset", "xo")
    assert code == 0, err
    lines = out.split("confusion matrix")[1].strip().splitlines()[1:]
    columns = lines[0].split()[1:]
    rows = [line.split()[0] for line in lines[1:]]
    assert columns == rows == ["X", "O"]
    long = ["T-shirt/top", "Trouser", "Pullover"]
    text = confusion_table(long, np.eye(3, dtype=int).tolist()).splitlines()
    assert text[0].split()[1:] == [line.split()[0] for line in text[1:4]] == ["0", "1", "2"]
    assert text[4] == "classes: 0 = T-shirt/top, 1 = Trouser, 2 = Pullover"


# -- 21: missing data -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_missing_mnist_names_data_dir_and_env(capsys, tmp_path, name):
    code, _, err = run(
        capsys,
        "train",
        "--model",
        "lenet5",
        "--dataset",
        name,
        "--data-dir",
        tmp_path,
        "--no-download",
        "--out",
        tmp_path / "m.npz",
    )
    line = one_line(err)
    assert code == 2
    assert "--data-dir" in line and "$CLEARCONV_DATA" in line and f"datasets fetch {name}" in line
    assert str(tmp_path / name) in line


def test_offline_fetch_does_not_suggest_itself_and_leaves_no_folder(capsys, tmp_path, monkeypatch):
    import urllib.error

    def offline(request, timeout=None):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "new-root"  # does not exist yet: fetch would create it
    for name in ("mnist", "fashion-mnist", "cifar10"):
        code, _, err = run(capsys, "datasets", "fetch", name, "--data-dir", root)
        line = one_line(err)
        assert code == 2
        assert "datasets fetch" not in line and "no network: cannot resolve" in line
        assert "--data-dir" in line and "[Errno" not in line
        assert not root.exists(), list(root.rglob("*"))
