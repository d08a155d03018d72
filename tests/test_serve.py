"""clearconv.serve: the JSON API, its limits, bad uploads and static files (TestClient)."""

import io

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

from clearconv import Model, nn
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
    pic = np.full((120, 120), 255, np.uint8)
    pic[20:100, 55:65] = 0
    return pic


def check_prediction(body, model, raw_pic):
    assert set(body) >= {"classes", "probabilities", "top"}
    assert body["classes"] == DIGITS
    p = np.array(body["probabilities"])
    assert p.shape == (10,) and abs(p.sum() - 1) < 1e-4 and p.min() >= 0
    from clearconv.viz.inputs import prepare

    expect = model.predict_proba(prepare(model, raw_pic))[0]
    np.testing.assert_allclose(p, expect, atol=1e-5)
    assert body["top"] == {
        "class": DIGITS[int(p.argmax())],
        "index": int(p.argmax()),
        "probability": pytest.approx(float(p.max()), abs=1e-6),
    }


def test_predict_raw_png_jpeg_multipart_and_json(client):
    pic = one()
    r = client.post("/api/predict", content=png(pic), headers={"content-type": "image/png"})
    assert r.status_code == 200
    check_prediction(r.json(), client.model, pic)
    r = client.post("/api/predict", files={"image": ("one.png", png(pic), "image/png")})
    assert r.status_code == 200
    check_prediction(r.json(), client.model, pic)
    r = client.post("/api/predict", json={"pixels": (pic / 255).tolist()})
    assert r.status_code == 200
    check_prediction(r.json(), client.model, pic)
    r = client.post("/api/predict", json={"pixels": pic.tolist()})  # 0-255 works too
    check_prediction(r.json(), client.model, pic)
    jpeg = png(np.stack([pic] * 3, -1), "JPEG")
    r = client.post("/api/predict", content=jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["classes"] == DIGITS


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
