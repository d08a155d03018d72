"""``clearconv serve`` under load and attack, on loopback only (RELIABILITY.md, "the page").

The server runs as a subprocess on a free 127.0.0.1 port with the X/O net. Eight
client threads with keep-alive connections send ``LOAD_REQUESTS`` (default 400;
2,000 for the figures) prediction requests, PNG and JSON alternately; every
answer is compared with the model run in this process. The server's VmRSS is
read from /proc before and after warm-up and at the end: it must stay flat.
Then the attacks: oversized and slow bodies, wrong content types, path
traversal, directory listing, unknown routes: all JSON errors, no stack traces.
"""

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
Image = pytest.importorskip("PIL.Image")

import clearconv  # noqa: E402
from clearconv import Model, zoo  # noqa: E402
from clearconv.data import make_xo  # noqa: E402

JSON = "application/json"
REQUESTS = int(os.environ.get("LOAD_REQUESTS", "400"))
CLIENTS = 8
BODY_TIMEOUT = 1.0  # the server's 10 s, shortened for the slow-body test
SERVER = (
    f"import sys, clearconv.serve.app as a; a.BODY_TIMEOUT_S = {BODY_TIMEOUT}; "
    "from clearconv.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    model = Model(net, shape, ["X", "O"])  # an X/O model: the page's +1/-1 ink path
    path = clearconv.save(model, d / "xo.npz")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", SERVER, "serve", str(path), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.communicate()[1][-2000:]}")
    yield proc, port, clearconv.load(path)
    proc.terminate()
    proc.communicate(timeout=10)


def _bodies(model) -> list[tuple[str, bytes, np.ndarray]]:
    """(content type, body, expected probabilities) for 8 X/O drawings.

    The expected input is the toy's own +1 (ink) / -1 image, not the server's
    preprocessing applied to the upload: the uploads are that image drawn
    white on black or (every other PNG) black on white, which the server must
    turn back into it.
    """
    out = []
    ds = make_xo(8, rng=np.random.default_rng(5))
    for i, img in enumerate(ds.images):  # img: float32 (1, 9, 9) of +1 / -1
        ink = img[0] > 0
        pic = np.where(ink, 255, 0).astype(np.uint8)
        if i % 4 == 0:
            pic = 255 - pic  # dark ink on light paper
        buf = io.BytesIO()
        Image.fromarray(pic).save(buf, format="PNG")
        if i % 2:
            ctype, body = "application/json", json.dumps({"pixels": pic.tolist()}).encode()
        else:
            ctype, body = "image/png", buf.getvalue()
        logits = model(img[None])[0].astype(np.float64)
        e = np.exp(logits - logits.max())
        out.append((ctype, body, e / e.sum()))
    return out


def _client(port, jobs, bodies, latencies, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for j in jobs:
        ctype, body, want = bodies[j % len(bodies)]
        t0 = time.perf_counter()
        conn.request("POST", "/api/predict", body, {"content-type": ctype})
        r = conn.getresponse()
        data = r.read()
        latencies.append(time.perf_counter() - t0)
        got = json.loads(data)
        if r.status != 200 or not np.allclose(got["probabilities"], want, atol=2e-6):
            errors.append((r.status, got, want.tolist()))
    conn.close()


def run_load(port: int, pid: int, model, n: int) -> dict:
    bodies = _bodies(model)
    warm: list[float] = []
    rss_start = _rss_kb(pid)
    _client(port, range(64), bodies, warm, [])  # warm-up
    rss_warm = _rss_kb(pid)
    latencies: list[float] = []
    errors: list = []
    threads = [
        threading.Thread(
            target=_client, args=(port, range(k, n, CLIENTS), bodies, latencies, errors)
        )
        for k in range(CLIENTS)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "rss_kb": {"start": rss_start, "after_warmup": rss_warm, "end": _rss_kb(pid)},
    }


def test_load_every_answer_correct_and_memory_flat(server):
    proc, port, model = server
    r = run_load(port, proc.pid, model, REQUESTS)
    print(json.dumps({k: v for k, v in r.items() if k != "errors"}))
    assert r["requests"] == REQUESTS and r["errors"] == [], r["errors"][:3]
    rss = r["rss_kb"]
    assert rss["end"] - rss["after_warmup"] < 16 * 1024, rss  # flat: under 16 MB of drift


def _raw(port: int, data: bytes, wait: float = 5.0) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        resp = b""
        while b"\r\n\r\n" not in resp or len(resp.split(b"\r\n\r\n", 1)[1]) < _length(resp):
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    head, body = resp.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(resp: bytes) -> int:
    for line in resp.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _get(port, path, method="GET", body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body, headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("content-type"), data


def test_attacks_get_json_errors_without_stack_traces(server):
    _, port, _ = server
    cases = [
        ("/static/../../../../etc/passwd", "GET", None, {}, 404),
        ("/static/..%2F..%2Fetc%2Fpasswd", "GET", None, {}, 404),
        ("/static/", "GET", None, {}, 404),  # no listing
        ("/static", "GET", None, {}, 404),
        ("/api/predict", "GET", None, {}, 405),
        ("/api/predict", "POST", b"x" * 10, {"content-type": "text/html"}, 415),
        ("/api/predict", "POST", b"x" * 10, {}, 415),
        ("/api/predict", "POST", b"\x89PNG garbage", {"content-type": "image/png"}, 400),
        ("/api/predict", "POST", b"{bad json", {"content-type": "application/json"}, 400),
        ("/api/predict", "POST", b'{"pixels": [[1e999]]}', {"content-type": JSON}, 400),
        ("/api/predict", "POST", b"x" * (3 << 20), {"content-type": "image/png"}, 413),
    ]  # fmt: skip
    for path, method, body, headers, want in cases:
        status, ctype, data = _get(port, path, method, body, headers)
        assert status == want, (path, status, data[:200])
        assert ctype.startswith("application/json"), (path, ctype)
        text = data.decode()
        assert set(json.loads(text)) == {"error"} and "Traceback" not in text, text


def test_lying_content_length_and_slow_body(server):
    _, port, _ = server
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    status, body = _raw(port, head + b"Content-Length: 99999999999\r\n\r\n")
    assert status == 413 and "over the limit" in body["error"]
    t0 = time.monotonic()  # claims 100 bytes, sends 10, then stalls
    status, body = _raw(port, head + b"Content-Length: 100\r\n\r\n" + b"x" * 10)
    assert status == 408 and time.monotonic() - t0 < BODY_TIMEOUT + 3, body


def test_serve_binds_localhost_by_default():
    from clearconv.cli import build_parser

    args = build_parser().parse_args(["serve", "m.npz"])
    assert args.host == "127.0.0.1"
