"""Segmentation: metrics against loops, the folder format and its errors, the generator,
paired augmentation, the zoo's unet/fcn, and the CLI end to end on a tiny generated set."""

from __future__ import annotations

import json

import numpy as np
import pytest

import clearconv
from clearconv import nn, segmentation, zoo
from clearconv.cli import main
from clearconv.data import DataError
from clearconv.data.segment import (
    IGNORE,
    PairedAugment,
    is_segmentation_folder,
    load_segmentation_folder,
    segmentation_classes,
)
from clearconv.data.shapes import SHAPE_CLASSES, make_shapes, write_shapes_folder
from clearconv.model import Model

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


# -- metrics -------------------------------------------------------------------------------
def _iou_loop(target, pred, k):
    """Per-class IoU and pixel accuracy, pixel by pixel (the reference)."""
    inter, union, right, total = [0] * k, [0] * k, 0, 0
    for t, p in zip(target.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if t == IGNORE:
            continue
        total += 1
        right += t == p
        for c in range(k):
            inter[c] += t == c and p == c
            union[c] += t == c or p == c
    iou = [inter[c] / union[c] if union[c] else float("nan") for c in range(k)]
    return iou, right / total


@pytest.mark.parametrize("seed", range(4))
def test_iou_matches_loop(seed):
    rng = np.random.default_rng(seed)
    k = 5
    target = rng.integers(0, k - 1, (3, 6, 7))  # the last class never appears in truth
    target[rng.random(target.shape) < 0.1] = IGNORE
    pred = np.where(
        rng.random(target.shape) < 0.6, np.maximum(target, 0), rng.integers(0, k, target.shape)
    )
    if seed == 0:
        pred[pred == k - 1] = 0  # ... nor in the prediction: no IoU, left out of the mean
    scores = segmentation.iou_scores(segmentation.confusion_matrix(target, pred, k))
    iou, acc = _iou_loop(target, pred, k)
    np.testing.assert_allclose(scores["iou"], iou, equal_nan=True)
    assert scores["pixel_accuracy"] == pytest.approx(acc)
    assert scores["mean_iou"] == pytest.approx(np.nanmean(iou))
    assert np.isnan(scores["iou"][k - 1]) == (seed == 0)


def test_overlay_and_colours():
    image = np.full((3, 2, 2), 100, np.uint8)
    mask = np.array([[0, 1], [2, 0]])
    out = segmentation.overlay(image, mask, alpha=0.5)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # background left clear
    np.testing.assert_array_equal(
        out[0, 1], np.round((100 + segmentation.PALETTE[1].astype(float)) / 2)
    )


# -- generator and folder ----------------------------------------------------------------------
def test_make_shapes_is_seeded_and_has_every_class():
    a = make_shapes(40, np.random.default_rng(3), size=32)
    b = make_shapes(40, np.random.default_rng(3), size=32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    images, masks = a
    assert images.dtype == np.uint8 and images.shape == (40, 3, 32, 32)
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    share = np.bincount(masks.ravel(), minlength=4) / masks.size
    assert share[0] > 0.5 and (share[1:] > 0.02).all()  # mostly background, every shape seen


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_folder(root, train=48, test=16, size=32, seed=1)
    return root


def test_folder_round_trip(shapes_folder):
    assert is_segmentation_folder(shapes_folder)
    classes = segmentation_classes(shapes_folder)
    assert classes == list(SHAPE_CLASSES)
    ds, skipped = load_segmentation_folder(shapes_folder, "test", classes)
    assert skipped == [] and ds.images.shape == (16, 3, 32, 32) and ds.labels.shape == (16, 32, 32)
    _, masks = make_shapes(16, np.random.default_rng([1, 1]), 32)
    np.testing.assert_array_equal(ds.labels, masks)  # the masks written are the masks drawn


def _bad_folder(tmp_path):
    root = tmp_path / "seg"
    for d in ("images", "masks"):
        (root / "train" / d).mkdir(parents=True)
    rgb = np.zeros((8, 8, 3), np.uint8)
    for name in ("a", "b", "c", "d"):
        Image.fromarray(rgb).save(root / "train" / "images" / f"{name}.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(root / "train" / "masks" / "a.png")
    Image.fromarray(np.ones((6, 8), np.uint8)).save(root / "train" / "masks" / "b.png")
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(root / "train" / "masks" / "c.png")
    (root / "classes.txt").write_text("bg\nthing\n")
    return root  # d has no mask


def test_folder_errors_name_the_file(tmp_path):
    root = _bad_folder(tmp_path)
    classes = segmentation_classes(root)
    with pytest.raises(DataError, match=r"b\.png: mask of size 8x6 for an image of 8x8"):
        load_segmentation_folder(root, "train", classes)
    (root / "train" / "masks" / "b.png").unlink()
    Image.fromarray(np.ones((8, 8), np.uint8)).save(root / "train" / "masks" / "b.png")
    with pytest.raises(DataError, match=r"c\.png: mask value 9 is beyond the 2 classes"):
        load_segmentation_folder(root, "train", classes)
    (root / "train" / "masks" / "c.png").unlink()
    with pytest.raises(DataError, match=r"c\.png: no mask .*masks/c\.png"):
        load_segmentation_folder(root, "train", classes)
    ds, skipped = load_segmentation_folder(root, "train", classes, skip_bad=True)
    assert len(ds) == 2 and len(skipped) == 2 and "d.png" in skipped[1]


def test_classes_from_masks_without_classes_txt(tmp_path):
    root = _bad_folder(tmp_path)
    (root / "classes.txt").unlink()
    assert segmentation_classes(root) == [str(i) for i in range(10)]  # the largest value, 9


# -- paired augmentation -----------------------------------------------------------------------
def test_paired_augment_moves_masks_with_images():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 4, (16, 12, 12))
    # channel 0 carries the mask's values: exact moves (flips, turns, shifts) keep them equal
    x = np.stack([masks, masks * 2, np.zeros_like(masks)], axis=1).astype(np.float32)
    aug = PairedAugment(flip=True, rot90=True, shift=3, fill=-1.0)
    xa, ma = aug(x, masks, np.random.default_rng(1))
    assert not np.array_equal(ma, masks)  # something moved
    covered = ma != IGNORE
    np.testing.assert_array_equal(xa[:, 0][covered], ma[covered])
    assert (xa[:, 0][~covered] == -1).all()
    # free rotations: masks by nearest neighbour, so only class values or IGNORE, never blends
    _, mr = PairedAugment(flip=False, rotate=30, scale=0.1)(x, masks, np.random.default_rng(2))
    assert set(np.unique(mr)) <= {IGNORE, 0, 1, 2, 3} and (mr == IGNORE).any()
    with pytest.raises(ValueError, match=r"masks \(N, H, W\)"):
        aug(x, masks[:, :5], rng)


# -- zoo ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "size"), [("unet", 32), ("unet", 48), ("fcn", 40)])
def test_zoo_segmentation_shapes(name, size):
    net, shape = zoo.build(name, (3, size, size), num_classes=5, rng=np.random.default_rng(0))
    assert net.output_shape((2, *shape)) == (2, 5, size, size)
    y = net(np.zeros((2, 3, size, size), np.float32))
    assert y.shape == (2, 5, size, size) and y.dtype == np.float32
    assert Model(net, shape, list("abcde")).per_pixel
    assert any(
        isinstance(m, nn.ConvTranspose2d if name == "unet" else nn.Upsample) for m in net.modules()
    )


def test_zoo_unet_needs_sizes_divisible_by_16():
    with pytest.raises(ValueError, match="unet needs image sizes divisible by 16, got 40x40"):
        zoo.build("unet", (3, 40, 40))


def test_unet_learns_a_small_set():
    """Sixty Adam steps on 16 generated scenes: the per-pixel loss falls, pixels come right."""
    from clearconv import train

    images, masks = make_shapes(16, np.random.default_rng(0), size=32)
    net, shape = zoo.build("unet", (3, 32, 32), 4, rng=np.random.default_rng(0))
    model = Model(net, shape, list(SHAPE_CLASSES))
    before = train.evaluate(model, images, masks.astype(np.int64))
    train.fit(
        model, (images, masks.astype(np.int64)), epochs=30, batch_size=8, lr=3e-3, progress=False
    )
    after = train.evaluate(model, images, masks.astype(np.int64))
    assert after["loss"] < 0.35 * before["loss"]
    assert after["pixel_accuracy"] > 0.9 and set(after) >= {"mean_iou", "iou", "confusion"}


# -- command line ------------------------------------------------------------------------------
def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_evaluate_predict(shapes_folder, tmp_path, capsys):
    out = tmp_path / "unet.npz"
    code, stdout, _ = run(capsys, "train", "--model", "unet", "--data", shapes_folder,
                          "--epochs", "2", "--batch-size", "16", "--out", out)  # fmt: skip
    assert code == 0, stdout
    assert stdout.count("\n          test mean IoU") == 2 and "wrote" in stdout  # per epoch
    code, stdout, _ = run(capsys, "evaluate", out, "--data", shapes_folder, "--json")
    assert code == 0
    rep = json.loads(stdout)
    assert set(rep) >= {"pixel_accuracy", "mean_iou", "per_class_iou"} and rep["n"] == 16
    assert list(rep["per_class_iou"]) == list(SHAPE_CLASSES)
    assert 0 <= rep["mean_iou"] <= 1 and 0 <= rep["pixel_accuracy"] <= 1
    image = shapes_folder / "test" / "images" / "00000.png"
    mask_out, overlay_out = tmp_path / "m.png", tmp_path / "o.png"
    code, stdout, _ = run(capsys, "predict", out, image, "--mask-out", mask_out,
                          "--overlay-out", overlay_out)  # fmt: skip
    assert code == 0 and "wrote mask" in stdout
    with Image.open(mask_out) as im, Image.open(overlay_out) as ov:
        assert im.size == (32, 32) and np.asarray(im).max() < 4 and ov.mode == "RGB"
    # an image of another size: the mask comes back at the image's own size
    big = tmp_path / "big.png"
    with Image.open(image) as im:
        im.resize((48, 40)).save(big)
    assert run(capsys, "predict", out, big, "--mask-out", mask_out)[0] == 0
    with Image.open(mask_out) as im:
        assert np.asarray(im).shape == (40, 48)


def test_cli_bad_pairs_skipped_in_training_and_named_in_evaluate(tmp_path, capsys):
    root = tmp_path / "seg"
    write_shapes_folder(root, train=20, test=4, size=16, seed=2)
    (root / "train" / "masks" / "00003.png").unlink()
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(root / "test" / "masks" / "00001.png")
    out = tmp_path / "m.npz"
    code, stdout, err = run(capsys, "train", "--model", "fcn", "--data", root, "--epochs", "1",
                            "--input-shape", "3,16,16", "--out", out)  # fmt: skip
    assert code == 0
    assert "skipped 1 bad training pair(s)" in err and "00003.png" in err
    assert "skipped 1 bad test pair(s)" in err
    code, _, err = run(capsys, "evaluate", out, "--data", root, "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "00001.png: mask value 7 is beyond the 4 classes" in err


def test_cli_find_lr_on_a_segmentation_folder_suggests_a_rate(shapes_folder, capsys):
    code, out, err = run(capsys, "train", "--model", "fcn", "--data", shapes_folder, "--find-lr")
    assert code == 0, err
    suggested = float(out.split("suggested --lr ")[1].split()[0])
    assert 1e-7 <= suggested <= 10 and "lr finder:" in out


def test_cli_a_segmentation_model_file_trains_further(shapes_folder, tmp_path, capsys):
    """From its weights and normalisation (the loss goes on from where it ended), with the
    recipe of the zoo model it came from; --num-classes gives it a new closing convolution."""
    first, again = tmp_path / "a.npz", tmp_path / "b.npz"
    common = ["--data", shapes_folder, "--batch-size", "16", "--quiet"]
    assert run(capsys, "train", "--model", "fcn", *common, "--epochs", "3", "--out", first)[0] == 0
    code, out, err = run(
        capsys, "train", "--model", first, *common, "--epochs", "1", "--out", again
    )
    assert code == 0, err
    a, b = clearconv.load(first), clearconv.load(again)
    np.testing.assert_array_equal(a.mean, b.mean)  # the weights' normalisation is kept
    assert b.meta["model"] == "fcn" and b.meta["fine_tuned_from"]["file"] == str(first)
    # one more epoch from trained weights ends below where three epochs from scratch began
    assert b.meta["history"][0]["train_loss"] < a.meta["history"][0]["train_loss"]
    # other classes: refused without --num-classes, a new 1x1 head with it
    other = tmp_path / "other"
    write_shapes_folder(other, train=8, test=4, size=32, seed=4)
    (other / "classes.txt").write_text("sky\nball\nbox\ncone\n")
    code, _, err = run(capsys, "train", "--model", first, "--data", other, "--out", again)
    assert code == 2 and "--num-classes 4" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "train", "--model", first, "--data", other, "--num-classes", "4",
                       "--epochs", "1", "--out", again, "--quiet")  # fmt: skip
    assert code == 0, err
    b = clearconv.load(again)
    assert b.class_names == ["sky", "ball", "box", "cone"]
    assert b.net(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 4, 32, 32)


def test_cli_segmentation_refusals_are_one_line(shapes_folder, tmp_path, capsys):
    classifier = tmp_path / "xo.npz"
    assert main(["train", "--model", "xo", "--dataset", "xo", "--epochs", "1", "--limit", "64",
                 "--out", str(classifier), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    for argv, says in [
        (["--model", classifier], "gives one class per image"),
        (["--model", "lenet5"], "gives one class per image; segmentation needs unet or fcn"),
        (["--model", "fcn", "--plots", tmp_path], "--plots draws a classifier's figures"),
    ]:
        code, _, err = run(
            capsys, "train", *argv, "--data", shapes_folder, "--out", tmp_path / "m.npz"
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


# -- inspect and the page ----------------------------------------------------------------------
def test_walk_finds_encoder_and_decoder_blocks():
    from clearconv.viz.segment import blocks, walk

    net, _ = zoo.build("unet", (3, 32, 32), 4, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    y, records = walk(net, x)
    np.testing.assert_allclose(y, net(x), rtol=1e-6)  # the walk computes what the net does
    found = [(b.where, b.output.shape[1:]) for b in blocks(records)]
    down = [(16, 32, 32), (32, 16, 16), (64, 8, 8), (128, 4, 4)]
    assert found == [*[("down", s) for s in down], ("bottom", (256, 2, 2)),
                     *[("up", s) for s in down[::-1]]]  # fmt: skip


def test_cli_inspect_segmentation(shapes_folder, tmp_path, capsys):
    net, shape = zoo.build("unet", (3, 32, 32), 4, rng=np.random.default_rng(0))
    from clearconv import io

    model_path = tmp_path / "u.npz"
    io.save(Model(net, shape, list(SHAPE_CLASSES)), model_path)
    out = tmp_path / "r.html"
    image = shapes_folder / "test" / "images" / "00002.png"
    code, stdout, _ = run(capsys, "inspect", model_path, "--image", image, "--out", out)
    assert code == 0 and "segmented" in stdout
    html = out.read_text()
    for heading in ("Input, prediction and overlay", "Down the encoder", "Up the decoder"):
        assert heading in html
    assert html.count("<h3>") == 9  # four levels down, the bottom, four up


def test_page_shows_the_overlay(shapes_folder):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from clearconv.serve import create_app

    net, shape = zoo.build("fcn", (3, 32, 32), 4, rng=np.random.default_rng(0))
    model = Model(net, shape, list(SHAPE_CLASSES))
    body = (shapes_folder / "test" / "images" / "00001.png").read_bytes()
    with TestClient(create_app(model)) as client:
        r = client.post("/api/predict", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 200
        data = r.json()
        assert data["overlay"].startswith("data:image/png;base64,")
        assert sum(data["probabilities"]) == pytest.approx(1.0)  # pixel shares
        r = client.post("/api/featuremaps", content=body, headers={"content-type": "image/png"})
        kinds = [layer["type"] for layer in r.json()["layers"]]
        assert kinds[0] == "down block" and "up block" not in kinds  # FCN: no decoder blocks
        assert "overlay" in client.get("/static/app.js").text
