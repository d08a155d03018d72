"""clearconv.serve: the JSON API, its limits, bad uploads and static files (TestClient)."""

import io
import json

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
pytest.importorskip("multipart")
import warnings

from PIL import Image

with warnings.catch_warnings():
    # newer Starlette suggests the httpx2 fork; plain httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from clearconv import Model, nn, zoo
from clearconv.serve import create_app

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def client():
    r = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 5, rng=r),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 12 * 12, 10, rng=r),
    )
    model = Model(net, (1, 28, 28), DIGITS, mean=[0.13], std=[0.31])
    with TestClient(create_app(model, max_bytes=64 * 1024), raise_server_exceptions=False) as c:
        c.model = model
        yield c


def png(pic: np.ndarray, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pic).save(buf, format=fmt)
    return buf.getvalue()


def one() -> np.ndarray:
    """A "1": a black bar 40 rows by 8 columns on white paper, 120 x 120."""
    pic = np.full((120, 120), 255, np.uint8)
    pic[40:80, 56:64] = 0
    return pic


def one_as_mnist() -> np.ndarray:
    """``one()`` as MNIST would have it, worked out by hand (not by the server's code).

    Ink white on black; the 40 x 8 bar halved to fit 20 x 20 is 20 x 4 of full
    ink; its centre of mass (9.5, 1.5) goes to pixel centre (13.5, 13.5): rows
    4..23, columns 12..15.
    """
    x = np.zeros((28, 28), np.uint8)
    x[4:24, 12:16] = 255
    return x


def softmax_of_net(model, x: np.ndarray) -> np.ndarray:
    """Probabilities of the net on the float32 batch ``x``, softmax by hand."""
    logits = model.net(x.astype(np.float32), training=False)[0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def check_prediction(body, model, expected_input: np.ndarray):
    """The answer must be the model's on ``expected_input`` (uint8 28 x 28)."""
    assert set(body) >= {"classes", "probabilities", "top"}
    assert body["classes"] == DIGITS
    p = np.array(body["probabilities"])
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-4 and p.min() >= 0
    x = (expected_input / 255 - 0.13) / 0.31  # the model's own normalisation
    np.testing.assert_allclose(p, softmax_of_net(model, x[None, None]), atol=1e-5)
    assert body["top"] == {
        "class": DIGITS[int(p.argmax())],
        "index": int(p.argmax()),
        "probability": pytest.approx(float(p.max()), abs=1e-6),
    }


def test_predict_raw_png_jpeg_multipart_and_json(client):
    pic, want = one(), one_as_mnist()
    r = client.post("/api/predict", content=png(pic), headers={"content-type": "image/png"})
    assert r.status_code == 200
    check_prediction(r.json(), client.model, want)
    r = client.post("/api/predict", files={"image": ("one.png", png(pic), "image/png")})
    assert r.status_code == 200
    check_prediction(r.json(), client.model, want)
    r = client.post("/api/predict", json={"pixels": (pic / 255).tolist()})
    assert r.status_code == 200
    check_prediction(r.json(), client.model, want)
    r = client.post("/api/predict", json={"pixels": pic.tolist()})  # 0-255 works too
    check_prediction(r.json(), client.model, want)
    jpeg = png(np.stack([pic] * 3, -1), "JPEG")
    r = client.post("/api/predict", content=jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["classes"] == DIGITS


# A known drawing for the X/O path: an X on the 9 x 9 grid, +1 ink, -1 paper.
X_DRAWING = np.where(np.eye(9, dtype=bool) | np.eye(9, dtype=bool)[::-1], 1.0, -1.0)


@pytest.fixture(scope="module")
def xo_client():
    net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    model = Model(net, shape, ["X", "O"])
    with TestClient(create_app(model), raise_server_exceptions=False) as c:
        c.model = model
        yield c


@pytest.mark.parametrize("paper", ["light", "dark"])
def test_predict_xo_drawing_becomes_plus_one_ink_on_minus_one(xo_client, paper):
    # The X drawn 27 x 27 (3 x 3 pixels a cell), black on white or white on
    # black, as a person or the page would; the server must see the grid.
    ink = np.kron(X_DRAWING > 0, np.ones((3, 3), bool))
    pic = np.where(ink, 0, 255) if paper == "light" else np.where(ink, 255, 0)
    pic = pic.astype(np.uint8)
    want = softmax_of_net(xo_client.model, X_DRAWING[None, None])
    small = np.where(X_DRAWING > 0, 0 if paper == "light" else 255, 255 if paper == "light" else 0)
    for body, ctype in (
        (png(pic), "image/png"),  # resized 27 -> 9 by the server
        (png(small.astype(np.uint8)), "image/png"),  # already 9 x 9
        (json.dumps({"pixels": pic.tolist()}).encode(), "application/json"),
    ):
        r = xo_client.post("/api/predict", content=body, headers={"content-type": ctype})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["classes"] == ["X", "O"]
        np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)


def test_featuremaps(client):
    r = client.post("/api/featuremaps", content=png(one()), headers={"content-type": "image/png"})
    assert r.status_code == 200
    body = r.json()
    assert body["input"].startswith("data:image/png;base64,")
    layers = body["layers"]
    assert [ly["type"] for ly in layers] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten"]
    assert [ly["shape"] for ly in layers][:3] == [[4, 24, 24], [4, 24, 24], [4, 12, 12]]
    assert [len(ly["maps"]) for ly in layers] == [4, 4, 4, 1]
    import base64

    for ly in layers:
        for uri in ly["maps"]:
            with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
                im.load()
                assert im.format == "PNG"


def test_featuremaps_of_a_branched_net_list_every_branch():
    r = np.random.default_rng(0)
    cfg = zoo._seq(zoo._conv(6, 3), zoo.RELU, *zoo._fire(2, 3, 5),
                   {"type": "Add", "branches": [{"type": "Identity"}, zoo._conv(8, 1)]},
                   zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(10))  # fmt: skip
    model = Model(nn.from_config(cfg, (1, 28, 28), rng=r), (1, 28, 28), DIGITS)
    with TestClient(create_app(model)) as c:
        body = c.post("/api/featuremaps", content=png(one()),
                      headers={"content-type": "image/png"}).json()  # fmt: skip
    fire, add = body["layers"][4], body["layers"][5]
    assert fire["type"] == "Concat" and fire["shape"] == [8, 26, 26]
    assert [(b["name"], b["label"], b["shape"], len(b["maps"])) for b in fire["branches"]] == [
        ("4.0", "Conv2d 1x1 → ReLU", [3, 26, 26], 3),
        ("4.1", "Conv2d 3x3 → ReLU", [5, 26, 26], 5),
    ]
    assert [b["label"] for b in add["branches"]] == ["Identity (the input itself)", "Conv2d 1x1"]
    assert all("branches" not in ly for ly in body["layers"][:4])


def test_model_info(client):
    r = client.get("/api/model")
    assert r.status_code == 200
    info = r.json()
    assert info["input_shape"] == [1, 28, 28] and info["class_names"] == DIGITS
    assert info["layers"][0]["type"].startswith("Conv2d")
    assert "Conv2d" in info["summary"]


def test_limits_and_bad_uploads(client):
    big = b"\x89PNG" + b"\0" * (64 * 1024)
    r = client.post("/api/predict", content=big, headers={"content-type": "image/png"})
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(100):
            yield b"\0" * 1024

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413
    r = client.post("/api/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "unsupported content type" in r.json()["error"]
    r = client.post("/api/predict", content=b"not an image", headers={"content-type": "image/png"})
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]
    r = client.post("/api/predict", content=b"", headers={"content-type": "image/png"})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/api/predict", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    for bad in (
        {"pixels": [[1, 2], [3]]},
        {"pixels": [1, 2]},
        {"pix": []},
        {"pixels": [[-5, 0]]},
        {"pixels": [[1e9, 0]]},
    ):
        r = client.post("/api/predict", json=bad)
        assert r.status_code == 400, bad
        assert "error" in r.json() and "Traceback" not in r.text
    r = client.post("/api/predict", files={"notes": ("a.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]
    r = client.post("/api/predict", data={"field": "x"})
    assert r.status_code in (400, 415)
    r = client.get("/api/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_static_files_no_listing_no_traversal(client):
    r = client.get("/")
    assert r.status_code == 200 and "<canvas" in r.text and "text/html" in r.headers["content-type"]
    r = client.get("/static/app.js")
    assert r.status_code == 200 and "pointerdown" in r.text
    assert client.get("/static/style.css").status_code == 200
    for path in (
        "/static/",
        "/static",
        "/static/index.html/..",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/../serve/app.py",
        "/nope",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("application/json")
        assert "import" not in r.text


def test_serve_cli_refuses_bad_arguments(tmp_path):
    from clearconv.cli import main

    assert main(["serve", str(tmp_path / "missing.npz")]) == 2
    (tmp_path / "m.npz").write_bytes(b"x")
    assert main(["serve", str(tmp_path / "m.npz"), "--port", "70000"]) == 2
