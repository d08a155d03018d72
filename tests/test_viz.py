"""clearconv.viz: the arrays behind every picture, and that every PNG and HTML file opens."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from clearconv import Model, nn
from clearconv.viz import (
    HealthMonitor,
    colorize,
    confusion_matrix,
    dead_relu_fraction,
    feature_maps,
    filter_image,
    filter_tiles,
    grad_cam,
    gradient_norms,
    inspect_report,
    last_conv_stage,
    layer_health,
    load_history,
    mosaic,
    normalize01,
    saliency,
    saliency_map,
    trace,
    upsample,
    worst_mistakes,
)

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

DIGITS = [str(i) for i in range(10)]


def small_cnn(rng, channels=1, dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 10, rng=rng, dtype=dtype),
    )


@pytest.fixture
def digit_model(rng):
    net = small_cnn(rng)
    return Model(net, (1, 14, 14), DIGITS, mean=[0.1], std=[0.3])


class Page(HTMLParser):
    """Collect tags and attributes to check a report is well formed and self-contained."""

    def __init__(self):
        super().__init__()
        self.imgs, self.external, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])


def parse(html):
    p = Page()
    p.feed(html)
    p.close()
    return p


def png_file(path):
    """(format, size) of an image file, opened and decoded (closed again)."""
    with Image.open(path) as im:
        im.load()
        return im.format, im.size


def open_png(uri_or_bytes):
    import base64
    import io

    data = uri_or_bytes
    if isinstance(data, str):
        assert data.startswith("data:image/png;base64,")
        data = base64.b64decode(data.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.format


# -- images -----------------------------------------------------------------


def test_normalize01_and_colorize_ranges(rng):
    a = rng.normal(size=(5, 7))
    n = normalize01(a)
    assert n.dtype == np.float32 and n.min() == 0 and n.max() == 1
    assert np.all(normalize01(np.full((2, 2), 3.0)) == 0.5)
    for cmap in ("gray", "viridis", "diverging"):
        rgb = colorize(a, cmap)
        assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    d = colorize(np.array([[-1.0, 0.0, 1.0]]), "diverging")
    assert d[0, 1].tolist() == [247, 247, 247]  # zero is white
    assert d[0, 0, 2] > d[0, 0, 0] and d[0, 2, 0] > d[0, 2, 2]  # blue < 0 < red
    with pytest.raises(ValueError, match="cmap must be"):
        colorize(a, "jet")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        colorize(np.zeros(3))


def test_mosaic_places_tiles(rng):
    tiles = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    m = mosaic(tiles, cols=3, pad=1, fill=-1)
    assert m.shape == (2 * 3 - 1, 3 * 4 - 1)
    np.testing.assert_array_equal(m[0:2, 4:7], tiles[1])
    np.testing.assert_array_equal(m[3:5, 4:7], tiles[4])
    assert np.all(m[3:5, 8:11] == -1)  # the empty sixth cell
    assert mosaic(rng.random((4, 3, 3, 3))).shape == (7, 7, 3)


# -- filters ----------------------------------------------------------------


def test_filter_tiles_rgb_and_grey(rng):
    w_rgb = rng.normal(size=(8, 3, 5, 5)).astype(np.float32)
    t = filter_tiles(w_rgb)
    assert t.shape == (8, 5, 5, 3)
    # per filter: each filter's own range maps to [0, 1]
    np.testing.assert_allclose(t.reshape(8, -1).min(1), 0, atol=1e-6)
    np.testing.assert_allclose(t.reshape(8, -1).max(1), 1, atol=1e-6)
    # the colour channel order is kept: channel 0 of filter 2 at pixel (1, 3)
    w01 = (w_rgb[2] - w_rgb[2].min()) / (w_rgb[2].max() - w_rgb[2].min())
    np.testing.assert_allclose(t[2, 1, 3], w01[:, 1, 3], rtol=1e-5)
    g = filter_tiles(rng.normal(size=(4, 6, 3, 3)), per_filter=False)
    assert g.shape == (24, 3, 3) and g.min() == 0 and g.max() == 1
    assert filter_tiles(rng.normal(size=(4, 2, 5))).shape == (8, 1, 5)  # Conv1d
    img = filter_image(rng.normal(size=(4, 6, 3, 3)))
    assert img.dtype == np.uint8 and img.shape == (4 * 4 - 1, 6 * 4 - 1, 3)
    with pytest.raises(ValueError, match=r"\(O, C, kH, kW\)"):
        filter_tiles(np.zeros((3, 3)))


# -- feature maps -------------------------------------------------------------


def test_trace_matches_forward_and_shapes(digit_model, rng):
    x = rng.normal(size=(2, 1, 14, 14)).astype(np.float32)
    outs = trace(digit_model, x)
    assert [o.name for o in outs] == [str(i) for i in range(7)]
    assert [o.kind for o in outs][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    shape = x.shape
    for o in outs:
        shape = o.layer.output_shape(shape)
        assert o.output.shape == shape and o.output.dtype == np.float32
    np.testing.assert_array_equal(outs[-1].output, digit_model(x))


def branched_model(rng):
    """A small GoogLeNet-like net: a stem, an Inception block, a residual Add, a head."""
    from clearconv import zoo

    cfg = zoo._seq(
        *zoo._bconv(8, 3, padding=1), zoo._pool(2, 2), zoo._inception(4, 4, 8, 2, 4, 4),
        {"type": "Add", "branches": [{"type": "Identity"},
                                     zoo._seq(zoo._conv(20, 3, padding=1), zoo.BN)]},
        zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(3),
    )  # fmt: skip
    net = nn.from_config(cfg, (3, 16, 16), rng=rng)
    return Model(net, (3, 16, 16), ["a", "b", "c"])


def test_trace_keeps_every_branchs_output(rng):
    model = branched_model(rng)
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    outs = trace(model, x)
    np.testing.assert_array_equal(outs[-1].output, model.net(x))
    concat, add = outs[4], outs[5]
    assert [b.name for b in concat.branches] == ["4.0", "4.1", "4.2", "4.3"]
    assert [b.output.shape[1] for b in concat.branches] == [4, 8, 4, 4]
    # the Concat's output is its branches' outputs side by side
    stacked = np.concatenate([b.output for b in concat.branches], axis=1)
    np.testing.assert_array_equal(stacked, concat.output)
    # the Add's output is the sum of its branches: the input itself and the conv path
    assert [b.kind for b in add.branches] == ["Identity", "Sequential"]
    np.testing.assert_array_equal(add.branches[0].output, concat.output)
    np.testing.assert_allclose(add.branches[0].output + add.branches[1].output, add.output)
    assert all(o.branches == () for o in outs if o.kind not in ("Concat", "Add"))
    # training mode keeps no branches (a second pass would move BatchNorm's statistics)
    assert trace(model, x, training=True)[4].branches == ()


def test_inspect_report_shows_each_branch_as_a_labelled_row(rng):
    model = branched_model(rng)
    raw = rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    html = inspect_report(model, raw)
    page = parse(html)
    assert page.external == []
    for i, label in enumerate(
        ["Conv2d 1x1 → BatchNorm2d → ReLU; output 4x8x8",
         "Conv2d 1x1 → BatchNorm2d → ReLU → Conv2d 3x3 → BatchNorm2d → ReLU; output 8x8x8",
         "Conv2d 1x1 → BatchNorm2d → ReLU → Conv2d 3x3 → BatchNorm2d → ReLU; output 4x8x8",
         "MaxPool2d 3x3 → Conv2d 1x1 → BatchNorm2d → ReLU; output 4x8x8"]
    ):  # fmt: skip
        assert f'id="branch-4-{i}"' in html
        assert f"Branch {i + 1} of 4 <small>(4.{i})</small>: {label}</h3>" in html
    assert "4 + 8 + 4 + 4 = 20 maps" in html
    assert "Identity (the input itself); output 20x8x8" in html
    assert "Conv2d 3x3 → BatchNorm2d; output 20x8x8" in html
    # each branch row draws its own maps: one picture per channel
    ids = ["branch-4-0", "branch-4-1", "branch-4-2", "branch-4-3", "branch-5-0", "branch-5-1"]
    starts = [html.index(f'id="{a}"') for a in ids]
    ends = [min([html.index("<h2", a), *(b for b in starts if b > a)]) for a in starts]
    counts = [html[a:b].count("<img") for a, b in zip(starts, ends)]
    assert counts == [4, 8, 4, 4, 20, 20]


def test_feature_maps_shared_and_per_map():
    a = np.stack([np.full((2, 2), 1.0), np.array([[0.0, 2.0], [4.0, 8.0]])])
    shared = feature_maps(a, "shared")
    per_map = feature_maps(a, "per_map")
    assert shared.shape == per_map.shape == (2, 2, 2)
    assert shared.min() == 0 and shared.max() == 1
    np.testing.assert_allclose(shared[0], 0.125)  # weak compared with the other map
    np.testing.assert_allclose(per_map[0], 0.5)  # constant map: mid grey
    np.testing.assert_allclose(per_map[1], [[0, 0.25], [0.5, 1]])
    np.testing.assert_allclose(feature_maps(np.arange(4.0), "shared"), [0, 1 / 3, 2 / 3, 1])
    with pytest.raises(ValueError, match="scale must be"):
        feature_maps(a, "global")


# -- saliency and Grad-CAM ---------------------------------------------------


def test_saliency_is_the_input_gradient_of_the_class_score(rng):
    net = small_cnn(rng, dtype=np.float64)
    x = rng.normal(size=(2, 1, 14, 14))
    g = saliency(net, x, target=3)
    assert g.shape == x.shape and g.dtype == np.float64
    eps = 1e-6
    for idx in [(0, 0, 3, 4), (1, 0, 7, 7), (1, 0, 13, 0)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (net(xp)[idx[0], 3] - net(xm)[idx[0], 3]) / (2 * eps)
        np.testing.assert_allclose(g[idx], num, rtol=1e-5, atol=1e-8)
    m = saliency_map(g)
    assert m.shape == (2, 14, 14) and m.min() >= 0 and m.max() <= 1
    np.testing.assert_allclose(m.reshape(2, -1).max(1), 1)
    with pytest.raises(ValueError, match="target class"):
        saliency(net, x, target=10)


def test_saliency_leaves_parameter_gradients_alone(digit_model, rng):
    x = rng.normal(size=(1, 1, 14, 14)).astype(np.float32)
    params = digit_model.parameters()
    params[0].grad = np.ones_like(params[0].data)
    saliency(digit_model, x)
    assert np.all(params[0].grad == 1) and all(p.grad is None for p in params[1:])


def test_grad_cam_by_hand(rng):
    net = small_cnn(rng, dtype=np.float64)
    x = rng.normal(size=(2, 1, 14, 14))
    assert last_conv_stage(net) == 4  # the ReLU after the last conv
    cam = grad_cam(net, x, target=np.array([1, 2]))
    assert cam.shape == (2, 14, 14) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    # by hand: A = output of stage 4, dA from the last two stages (Flatten, Linear)
    a = net[:5](x)
    w = net[6].weight.data  # (10, 150)
    onehot = np.eye(10)[[1, 2]]
    da = (onehot @ w).reshape(a.shape)
    small = np.maximum(np.einsum("nc,nchw->nhw", da.mean(axis=(2, 3)), a), 0)
    expect = upsample(small, (14, 14))
    expect = expect / np.maximum(expect.max(axis=(1, 2), keepdims=True), 1e-30)
    np.testing.assert_allclose(cam, expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs a convolution"):
        grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=rng)), x[:, :, :2, :2])


def test_upsample_keeps_constants_and_range(rng):
    m = rng.random((3, 5, 5)).astype(np.float32)
    up = upsample(m, (20, 15))
    assert up.shape == (3, 20, 15)
    assert up.min() >= m.min() - 1e-6 and up.max() <= m.max() + 1e-6
    np.testing.assert_allclose(upsample(np.ones((1, 3, 3)), (9, 9)), 1, rtol=1e-6)


# -- training health ---------------------------------------------------------


def test_gradient_norms_and_dead_relus(rng):
    net = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.ReLU(), nn.Linear(4, 2, rng=rng))
    net[0].weight.data[:] = 0
    net[0].bias.data[:] = [-1, -1, -1, 1]  # three units never fire
    x = rng.normal(size=(32, 3)).astype(np.float32)
    assert dead_relu_fraction(net, x) == {"1": 0.75}
    h = layer_health(net, x, rng.integers(0, 2, 32))
    assert set(h["grad_norm"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert all(v >= 0 for v in h["grad_norm"].values())
    assert all(p.grad is None for p in net.parameters())  # training state untouched
    net[2].weight.grad = np.full((2, 4), 0.5, np.float32)
    assert gradient_norms(net) == {"2.weight": pytest.approx(np.sqrt(8 * 0.25))}


def test_health_monitor_as_fit_callback(rng):
    from clearconv.train import fit

    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8, rng=rng), nn.ReLU(), nn.Linear(8, 2, rng=rng))
    model = Model(net, (1, 2, 2), ["a", "b"])
    x = rng.normal(size=(64, 1, 2, 2)).astype(np.float32)
    y = (x.reshape(64, -1).sum(1) > 0).astype(np.int64)
    mon = HealthMonitor(model, x[:16], y[:16])
    fit(model, (x, y), epochs=3, batch_size=16, lr=0.01, progress=False, on_epoch_end=mon)
    norms = mon.series("grad_norm")
    assert len(mon.history) == 3 and len(norms["1.weight"]) == 3
    assert len(mon.series("dead_relu")["2"]) == 3
    with pytest.raises(ValueError, match="grad_norm"):
        mon.series("loss")


# -- after training ----------------------------------------------------------


def test_history_csv_json_and_curves_png(tmp_path):
    from clearconv.viz import plot_curves

    csv_path = tmp_path / "h.csv"
    csv_path.write_text("epoch,train_loss,val_acc\n1,0.9,0.5\n2,0.5,\n")
    h = load_history(csv_path)
    assert h["epoch"] == [1, 2] and h["train_loss"] == [0.9, 0.5] and np.isnan(h["val_acc"][1])
    records = {"records": [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]}
    (tmp_path / "h.json").write_text(json.dumps(records))
    assert load_history(tmp_path / "h.json")["train_loss"] == [1.0, 0.5]
    (tmp_path / "cols.json").write_text(json.dumps({"loss": [3, 2, 1]}))
    assert load_history(tmp_path / "cols.json") == {"loss": [3.0, 2.0, 1.0]}
    (tmp_path / "empty.csv").write_text("epoch,loss\n")
    with pytest.raises(ValueError, match=r"empty\.csv: the history is empty"):
        load_history(tmp_path / "empty.csv")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not a JSON history"):
        load_history(tmp_path / "bad.json")
    pytest.importorskip("matplotlib")
    out = plot_curves(h, tmp_path / "curves.png")
    assert png_file(out)[0] == "PNG" and png_file(out)[1][0] > 100


def test_a_one_epoch_history_writes_its_values_beside_its_points():
    plt = pytest.importorskip("matplotlib.pyplot")
    from clearconv.viz.curves import draw_curves

    fig, axes = plt.subplots(1, 2)
    draw_curves(axes, {"epoch": [1], "train_loss": [0.4123], "train_acc": [0.875]})
    assert [t.get_text() for t in axes[0].texts] == ["0.4123"]
    assert [t.get_text() for t in axes[1].texts] == ["0.875"]
    assert axes[0].get_title() == "loss (one epoch)"
    fig2, axes2 = plt.subplots(1, 2)
    draw_curves(axes2, {"epoch": [1, 2], "train_loss": [0.9, 0.5]})
    assert not axes2[0].texts and axes2[0].get_title() == "loss"  # a curve speaks for itself
    plt.close(fig)
    plt.close(fig2)


def test_confusion_and_worst_mistakes_and_their_pngs(tmp_path, rng):
    labels = np.array([0, 1, 2, 2, 1])
    preds = np.array([0, 2, 2, 1, 1])
    c = confusion_matrix(labels, preds, 3)
    assert c.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]] and c.sum() == 5
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0, 0, 1], [0.3, 0.6, 0.1], [0, 1, 0]])
    assert worst_mistakes(probs, labels).tolist() == [1, 3]
    assert worst_mistakes(probs, labels, k=1).tolist() == [1]
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(labels, preds[:2], 3)
    pytest.importorskip("matplotlib")
    from clearconv.viz import plot_confusion, plot_health, plot_mistakes

    assert png_file(plot_confusion(c, ["a", "b", "c"], tmp_path / "c.png"))[0] == "PNG"
    images = rng.integers(0, 255, (5, 1, 8, 8)).astype(np.uint8)
    out = plot_mistakes(images, probs, labels, ["a", "b", "c"], tmp_path / "m.png")
    assert png_file(out)[0] == "PNG"
    hist = [{"grad_norm": {"0.weight": 1.0}, "dead_relu": {"1": 0.1}}] * 2
    assert png_file(plot_health(hist, tmp_path / "h.png"))[0] == "PNG"


def test_mistake_titles_do_not_run_under_the_row_above(tmp_path, rng, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from clearconv.viz import plot_mistakes

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to measure it
    labels = np.arange(16) % 10
    probs = np.full((16, 10), 0.01, np.float32)
    probs[np.arange(16), (labels + 1) % 10] = 0.91  # all wrong: two rows of eight
    images = rng.integers(0, 255, (16, 1, 28, 28)).astype(np.uint8)
    plot_mistakes(images, probs, labels, [str(i) for i in range(10)], tmp_path / "m.png")
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    assert len(axes) == 16
    for ax in axes[8:]:  # second row: its title must clear the images of the first
        title = ax.title.get_window_extent(renderer)
        for above in axes[:8]:
            image = above.get_window_extent(renderer)
            assert not title.overlaps(image), (ax.get_title(), title, image)
    close(fig)


# -- the inspect report --------------------------------------------------------


def test_inspect_report_is_self_contained_html(digit_model, rng):
    raw = rng.integers(0, 255, (1, 1, 14, 14)).astype(np.uint8)
    html = inspect_report(digit_model, raw, title="test <report>")
    page = parse(html)
    assert "<title>test &lt;report&gt;</title>" in html  # escaped
    assert page.external == []  # nothing outside the file
    # input, preprocessed, maps of stages 1-5 (4+4+4+6+6), the flat strip, saliency,
    # Grad-CAM, and the kernels of the two convolutions, one picture each (4x1 + 6x4)
    assert len(page.imgs) == 2 + 24 + 1 + 2 + 4 * 1 + 6 * 4
    assert all(open_png(src) == "PNG" for src in page.imgs)
    for word in ("Conv2d", "MaxPool2d", "Flatten", "softmax", "Filters", "Model summary"):
        assert word.lower() in html.lower()
    probs = digit_model.predict_proba(raw)[0]
    assert f"{probs.max():.4f}" in html


def test_inspect_cli_writes_the_report(tmp_path, digit_model):
    from clearconv import save
    from clearconv.cli import main

    save(digit_model, tmp_path / "m.npz")
    pic = np.full((40, 30), 255, np.uint8)
    pic[5:35, 13:17] = 0  # a dark "1" on white paper
    Image.fromarray(pic).save(tmp_path / "one.png")
    out = tmp_path / "r.html"
    rc = main(
        [
            "inspect",
            str(tmp_path / "m.npz"),
            "--image",
            str(tmp_path / "one.png"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0 and out.stat().st_size > 1000
    assert len(parse(out.read_text()).imgs) > 10
    (tmp_path / "not.png").write_bytes(b"plain text")
    assert main(["inspect", str(tmp_path / "m.npz"), "--image", str(tmp_path / "not.png")]) == 2
    assert main(["inspect", str(tmp_path / "missing.npz"), "--image", "x.png"]) == 2


def test_is_digit_model_one_rule_for_the_page_and_predict(rng, digit_model):
    from clearconv.viz.inputs import is_digit_model

    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10, rng=rng))
    letters = list("abcdefghij")
    assert is_digit_model(Model(net, (1, 28, 28), DIGITS))  # named 0..9
    assert is_digit_model(Model(net, (1, 28, 28), letters, meta={"dataset": "mnist"}))
    assert is_digit_model(Model(net, (1, 28, 28), letters, meta={"preprocess": "mnist"}))
    assert not is_digit_model(Model(net, (1, 28, 28), letters))
    assert not is_digit_model(digit_model)  # 14x14: not MNIST's size
