"""The tutorials' X/O example: every number against the ones worked by hand."""

import numpy as np
import pytest

from clearconv.data import xo_canonical
from clearconv.viz.xo import train_xo, tutorial_net, walkthrough, xo_features

# The tutorial's filtered map of the X with the "\" feature, in ninths
# (0.77 = 7/9, 0.55 = 5/9, 0.33 = 3/9, 0.11 = 1/9; shown truncated in the slides).
X_DIAGONAL_NINTHS = [
    [7, -1, 1, 3, 5, -1, 3],
    [-1, 9, -1, 3, -1, 1, -1],
    [1, -1, 9, -3, 1, -1, 5],
    [3, 3, -3, 5, -3, 3, 3],
    [5, -1, 1, -3, 9, -1, 1],
    [-1, 1, -1, 3, -1, 9, -1],
    [3, -1, 5, 3, 1, -1, 7],
]
# ... after ReLU and 2x2 max pooling with the ragged border padded (4x4).
X_DIAGONAL_POOLED_NINTHS = [[9, 3, 5, 3], [3, 9, 3, 5], [5, 3, 9, 1], [3, 5, 1, 7]]


@pytest.fixture(scope="module")
def walk():
    return walkthrough()


def test_features_are_the_tutorials():
    f = xo_features()
    assert f.shape == (3, 3, 3) and set(np.unique(f)) == {-1.0, 1.0}
    np.testing.assert_array_equal(f[0], np.where(np.eye(3), 1, -1))
    np.testing.assert_array_equal(f[2], np.where(np.eye(3)[:, ::-1], 1, -1))
    np.testing.assert_array_equal(f[1], np.maximum(f[0], f[2]))  # the small x: both lines


def test_shapes(walk):
    assert walk["images"].shape == (2, 9, 9)
    assert walk["conv"].shape == walk["relu"].shape == (2, 3, 7, 7)
    assert walk["pooled"].shape == (2, 3, 4, 4)
    assert walk["flat"].shape == (2, 48) and walk["votes"].shape == (2, 48)
    assert walk["scores"].shape == walk["probabilities"].shape == (2, 2)


def test_filtering_is_the_mean_of_products(walk):
    conv = walk["conv"]
    assert conv.min() >= -1 and conv.max() <= 1
    # a full match gives exactly 1: the "\" feature on the X's "\" stroke
    assert [float(conv[0, 0, i, i]) for i in (1, 2, 4, 5)] == [1.0] * 4  # (3, 3) is the crossing
    assert float(conv[0, 2, 1, 5]) == 1.0  # "/" on the "/" stroke
    assert float(conv[0, 1, 3, 3]) == 1.0  # the small x at the centre of the X
    # a full mismatch gives -1: the negated X against its own features
    neg = walkthrough(images=-xo_canonical())["conv"]
    assert float(neg[0, 0, 1, 1]) == -1.0 and float(neg[0, 1, 3, 3]) == -1.0
    # the whole map of the tutorial's slide, 0.77 and 0.55 included
    np.testing.assert_allclose(conv[0, 0], np.array(X_DIAGONAL_NINTHS) / 9, atol=1e-6)
    assert round(float(conv[0, 0, 0, 0]), 2) == 0.78 and int(conv[0, 0, 0, 0] * 100) == 77
    # the same numbers by a loop over positions (kept here, in the test only)
    x, f = walk["images"][0], walk["features"][0]
    loop = np.array([[np.mean(x[i : i + 3, j : j + 3] * f) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(conv[0, 0], loop, atol=1e-6)
    # symmetry: the "/" map of the X is the "\" map mirrored
    np.testing.assert_allclose(conv[0, 2], conv[0, 0][:, ::-1], atol=1e-6)


def test_relu_and_pooling(walk):
    np.testing.assert_array_equal(walk["relu"], np.maximum(walk["conv"], 0))
    np.testing.assert_allclose(
        walk["pooled"][0, 0], np.array(X_DIAGONAL_POOLED_NINTHS) / 9, atol=1e-6
    )
    # the ragged border: the last pooled row/column come from one row/column of the 7x7 map
    r = walk["relu"]
    np.testing.assert_array_equal(walk["pooled"][..., 3, 3], r[..., 6, 6])
    np.testing.assert_array_equal(walk["pooled"][..., 3, 0], r[..., 6, :2].max(-1))


def test_votes_pick_the_right_class(walk):
    votes = walk["votes"]
    np.testing.assert_allclose(votes.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(walk["scores"], walk["flat"] @ votes.T, rtol=1e-5)
    assert walk["scores"].argmax(axis=1).tolist() == [0, 1]
    p = walk["probabilities"]
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert p[0, 0] > 0.5 and p[1, 1] > 0.5


def test_network_is_made_of_the_engines_layers():
    net = tutorial_net()
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert net[0].bias is None and net[2].ceil_mode
    np.testing.assert_allclose(net[0].weight.data[:, 0] * 9, xo_features())


def test_trained_network_learns_xo():
    net, hist = train_xo(epochs=6, n=200, seed=0)
    assert len(hist["loss"]) == 6 and hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] >= 0.95
    assert net[0].weight.data.shape == (3, 1, 3, 3)
    w = walkthrough(net)
    assert w["scores"].argmax(axis=1).tolist() == [0, 1]  # the canonical X and O too
    net2, hist2 = train_xo(epochs=6, n=200, seed=0)
    np.testing.assert_array_equal(net2[0].weight.data, net[0].weight.data)  # seeded


def test_xo_report_and_cli(tmp_path):
    from html.parser import HTMLParser

    from clearconv.cli import main

    out = tmp_path / "xo.html"
    assert main(["xo", "--out", str(out), "--epochs", "3", "--samples", "100"]) == 0
    html = out.read_text()
    imgs = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                imgs.append(dict(attrs)["src"])

    P().feed(html)
    assert len(imgs) >= 8 and all(s.startswith("data:image/png;base64,") for s in imgs)
    relu_to_votes = html.split("4. ReLU")[1].split("6. Fully connected")[0]
    assert "0.78" in html and "1.00" in html and "-1.00" not in relu_to_votes
    assert "Learned instead of hand-made" in html
    assert main(["xo", "--out", str(tmp_path / "b.html"), "--epochs", "-1"]) == 2
