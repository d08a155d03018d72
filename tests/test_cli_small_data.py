"""The command line on small image folders and saved models (issue 24, items 4, 5, 7, 8, 9, 15).

Everything is made here: stripe images drawn with NumPy and saved with
Pillow, the X/O toy, tiny IDX files. No test reads ../shared or the network.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import clearconv
from clearconv.cli import main
from clearconv.data import stratified_split, write_idx

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of one command."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _stripes(kind: str, rng: np.random.Generator) -> Image.Image:
    """A grey noisy square of random size with light horizontal or vertical stripes."""
    n = int(rng.integers(16, 33))
    a = rng.integers(0, 60, (n, n)).astype(np.uint8)
    period = int(rng.integers(3, 6))
    band = (np.arange(n) + int(rng.integers(0, period))) % period < period // 2 + 1
    if kind == "horizontal":
        a[band, :] = 200 + a[band, :] // 2
    else:
        a[:, band] = 200 + a[:, band] // 2
    return Image.fromarray(a).convert("RGB")


def _stripes_folder(root, per_class=40, seed=0, classes=("horizontal", "vertical")):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            _stripes(c, rng).save(root / c / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """80 images, 2 classes of 40, no FOLDER/test."""
    return _stripes_folder(tmp_path_factory.mktemp("stripes") / "stripes")


@pytest.fixture(scope="module")
def stripes_model(tmp_path_factory, stripes):
    """``simple`` trained on ``stripes`` with every default, and its output."""
    path = tmp_path_factory.mktemp("models") / "stripes.npz"
    code = main(["train", "--model", "simple", "--data", str(stripes), "--out", str(path)])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def xo_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "xo.npz"
    argv = ["train", "--model", "xo", "--dataset", "xo", "--epochs", "2", "--limit", "300"]
    assert main([*argv, "--seed", "3", "--out", str(path), "-q"]) == 0
    return path


def _is_png(path) -> bool:
    with Image.open(path) as im:
        im.verify()
    return path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 500


# -- item 5: small folders learn with the defaults --------------------------------------


def test_small_folder_learns_with_the_defaults(capsys, tmp_path, stripes):
    # The MNIST recipe (1 epoch, batch 64) is one optimizer step on 64 images.
    out_path = tmp_path / "m.npz"
    code, out, err = run(capsys, "train", "--model", "simple", "--data", stripes, "--out", out_path)
    assert code == 0, err
    assert "found 80 images in 2 classes: horizontal (40), vertical (40)" in out
    assert "16 held out for testing (20% of each class)" in out
    assert "small data (64 training images): batch 8, 25 epochs" in out
    meta = clearconv.load(out_path).meta
    assert meta["settings"]["batch_size"] == 8 and meta["epochs"] == 25
    assert meta["train_images"] == 64 and meta["test_images"] == 16
    assert meta["class_counts"] == [32, 32]  # the training part, stratified
    assert meta["test_accuracy"] >= 0.9, meta["test_accuracy"]


def test_small_data_rule_keeps_what_the_command_line_sets(capsys, tmp_path, stripes):
    argv = ["train", "--model", "simple", "--data", stripes, "--out", tmp_path / "m.npz"]
    code, out, err = run(capsys, *argv, "--epochs", 2)
    assert code == 0, err
    settings = clearconv.load(tmp_path / "m.npz").meta["settings"]
    assert settings["epochs"] == 2 and settings["batch_size"] == 8  # only the batch was free
    # the line names the rule that applied, not the minimum of steps that 2 epochs do not reach
    assert "batch 8, 2 epochs (a batch holds at most 1/8 of the images" in out
    assert "optimizer steps" not in out
    code, out, err = run(capsys, *argv, "--epochs", 1, "--batch-size", 64)
    assert code == 0, err
    assert "small data" not in out
    settings = clearconv.load(tmp_path / "m.npz").meta["settings"]
    assert (settings["epochs"], settings["batch_size"]) == (1, 64)


def test_small_data_rule_leaves_large_data_alone():
    import argparse

    from clearconv.cli.train import MIN_STEPS, small_data

    free = argparse.Namespace(epochs=None, batch_size=None)
    cfg = {"epochs": 1, "batch_size": 32}
    assert small_data(cfg, 60_000, free) is None and cfg == {"epochs": 1, "batch_size": 32}
    cfg = {"epochs": 5, "batch_size": 64}
    line = small_data(cfg, 1000, free)
    steps = -(-1000 // cfg["batch_size"])
    assert cfg["batch_size"] == 64 and cfg["epochs"] * steps >= MIN_STEPS
    assert (cfg["epochs"] - 1) * steps < MIN_STEPS and line is not None


def test_stratified_split_of_the_held_out_images_matches_evaluate(capsys, stripes_model):
    code, out, err = run(capsys, "evaluate", stripes_model, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert [c["support"] for c in rep["per_class"]] == [8, 8]
    assert rep["data"]["from_model_file"] is True and rep["n"] == 16


@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=60),
    st.sampled_from([0.1, 0.2, 0.25, 0.5]),
    st.integers(0, 2**16),
)
def test_stratified_split_keeps_each_class_share(labels, fraction, seed):
    labels = np.array(labels, dtype=np.int64)
    tr, te = stratified_split(labels, fraction, np.random.default_rng(seed))
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(labels)))
    assert len(te) == round(len(labels) * fraction)
    counts = np.bincount(labels, minlength=5)
    held = np.bincount(labels[te], minlength=5)
    # each class gives its quota, rounded down or up
    assert np.all(held >= np.floor(counts * fraction)) and np.all(
        held <= np.ceil(counts * fraction)
    )
    again = stratified_split(labels, fraction, np.random.default_rng(seed))
    assert np.array_equal(again[1], te)


def test_single_class_and_empty_class_folders_are_refused(capsys, tmp_path):
    _stripes_folder(tmp_path / "one", per_class=5, classes=("cat",))
    line = one_line_error(
        *run(capsys, "train", "--model", "simple", "--data", tmp_path / "one",
             "--out", tmp_path / "m.npz")[::2]
    )  # fmt: skip
    assert "one class folder (cat)" in line and "at least two" in line
    _stripes_folder(tmp_path / "two", per_class=5, classes=("cat",))
    (tmp_path / "two" / "dog").mkdir()
    (tmp_path / "two" / "dog" / "notes.txt").write_text("no images here")
    line = one_line_error(
        *run(capsys, "train", "--model", "simple", "--data", tmp_path / "two",
             "--out", tmp_path / "m.npz")[::2]
    )  # fmt: skip
    assert "no readable images in class folder(s) dog" in line
    assert not (tmp_path / "m.npz").exists()


# -- item 4: unreadable images are skipped and named --------------------------------------


def test_folder_training_skips_unreadable_images(capsys, tmp_path):
    root = _stripes_folder(tmp_path / "data", per_class=10, seed=1)
    (root / "horizontal" / "a.png").write_bytes(b"not a png")
    (root / "vertical" / "b.jpg").write_bytes(b"\xff\xd8\xff truncated jpeg")
    out_path = tmp_path / "m.npz"
    argv = ["train", "--model", "simple", "--data", root, "--epochs", 1, "--out", out_path, "-q"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(r"skipped 2 unreadable files: .*a\.png, .*b\.jpg$", lines[0])
    meta = clearconv.load(out_path).meta
    assert meta["train_images"] + meta["test_images"] == 20  # the good ones, all used
    code, out, err = run(capsys, "evaluate", out_path, "--json")
    assert code == 0 and json.loads(out)["n"] == 4 and "skipped 2 unreadable files" in err


def test_folder_training_with_no_readable_image_is_one_line(capsys, tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / "data" / c).mkdir(parents=True)
        (tmp_path / "data" / c / "x.png").write_bytes(b"garbage")
    line = one_line_error(
        *run(capsys, "train", "--model", "simple", "--data", tmp_path / "data",
             "--out", tmp_path / "m.npz")[::2]
    )  # fmt: skip
    assert "none of its 2 image files could be read" in line


def test_predict_skips_bad_files_and_searches_subfolders(capsys, tmp_path, stripes_model):
    rng = np.random.default_rng(5)
    (tmp_path / "pics" / "deep" / "deeper").mkdir(parents=True)
    good = [
        tmp_path / "pics" / "top.png",
        tmp_path / "pics" / "deep" / "mid.jpg",
        tmp_path / "pics" / "deep" / "deeper" / "low.PNG",
    ]
    for i, p in enumerate(good):
        _stripes("horizontal" if i % 2 else "vertical", rng).save(p, format="PNG")
    (tmp_path / "pics" / "deep" / "bad.png").write_bytes(b"not an image")
    (tmp_path / "pics" / "readme.txt").write_text("not an image and not an image name")
    code, out, err = run(capsys, "predict", stripes_model, tmp_path / "pics", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert sorted(r["file"] for r in rep["results"]) == sorted(str(p) for p in good)
    assert [s["file"] for s in rep["skipped"]] == [str(tmp_path / "pics" / "deep" / "bad.png")]
    assert err.strip().endswith("skipped 1 unreadable file: " + str(tmp_path / "pics/deep/bad.png"))
    code, out, err = run(capsys, "predict", stripes_model, tmp_path / "pics")
    assert code == 0 and len(out.strip().splitlines()) == 1 + len(good)


def test_predict_with_only_bad_files_is_one_line(capsys, tmp_path, stripes_model):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"junk")
    line = one_line_error(
        *run(capsys, "predict", stripes_model, tmp_path / "a.png", tmp_path / "b.png")[::2]
    )
    assert "none of the 2 image files could be read" in line and "a.png" in line


# -- item 7: what an architecture file loses to the data is said ---------------------------

ARCH = """input_shape = {shape}
[[layers]]
type = "Conv2d"
out_channels = 4
kernel_size = 3
[[layers]]
type = "ReLU"
[[layers]]
type = "Flatten"
[[layers]]
type = "Linear"
out_features = {k}
"""


def test_architecture_file_settings_the_data_replaces_are_named(capsys, tmp_path):
    arch = tmp_path / "net.toml"
    arch.write_text(ARCH.format(shape=[1, 28, 28], k=7))
    out_path = tmp_path / "m.npz"
    argv = ["train", "--model", arch, "--dataset", "xo", "--limit", 64, "--epochs", 1, "-q"]
    code, out, err = run(capsys, *argv, "--out", out_path)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "input_shape = [1, 28, 28]" in lines[0] and "built for (1, 9, 9)" in lines[0]
    assert "out_features = 7" in lines[1] and "it gets 2 outputs" in lines[1]
    model = clearconv.load(out_path)
    assert model.input_shape == (1, 9, 9) and model.num_classes == 2
    assert len(model.meta["adapted"]) == 2
    arch.write_text(ARCH.format(shape=[1, 9, 9], k=2))  # a file that fits: nothing to say
    code, out, err = run(capsys, *argv, "--out", out_path)
    assert code == 0 and err == ""


# -- item 8: a model file trains further --------------------------------------------------


def test_train_help_names_model_files_and_num_classes(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    assert "model file (.npz) to continue training" in " ".join(out.split())
    assert "--num-classes" in out and "--find-lr" in out and "--plots" in out


def test_training_continues_from_a_model_file(capsys, tmp_path, xo_model):
    base = clearconv.load(xo_model)
    out_path = tmp_path / "more.npz"
    argv = ["train", "--model", xo_model, "--dataset", "xo", "--limit", 64, "--epochs", 1]
    code, out, err = run(capsys, *argv, "--lr", "1e-9", "--out", out_path, "-q")
    assert code == 0, err
    more = clearconv.load(out_path)
    # a vanishing learning rate: the weights are the saved ones, not a fresh start
    for k, v in base.state_dict().items():
        np.testing.assert_allclose(more.state_dict()[k], v, atol=1e-5)
    np.testing.assert_array_equal(more.mean, base.mean)  # the normalisation it learned with
    assert more.meta["fine_tuned_from"] == {
        "file": str(xo_model),
        "classes": ["X", "O"],
        "new_head": False,
    }
    assert more.meta["model"] == "xo"  # the recipe of the model it came from
    code, out, err = run(capsys, *argv, "--lr", "0.01", "--out", out_path, "-q")
    assert code == 0, err
    changed = clearconv.load(out_path).state_dict()
    assert any(not np.allclose(changed[k], v) for k, v in base.state_dict().items())


def test_a_new_head_for_other_classes(capsys, tmp_path, xo_model):
    root = _stripes_folder(tmp_path / "data", per_class=6, classes=("a", "b", "c"))
    out_path = tmp_path / "new.npz"
    argv = ["train", "--model", xo_model, "--data", root, "--epochs", 1, "--out", out_path, "-q"]
    line = one_line_error(*run(capsys, *argv)[::2])
    assert "has 2 classes (X, O)" in line and "add --num-classes 3" in line
    code, out, err = run(capsys, *argv, "--num-classes", 3, "--lr", "1e-9")
    assert code == 0, err
    base, new = clearconv.load(xo_model), clearconv.load(out_path)
    assert new.class_names == ["a", "b", "c"] and new.input_shape == (1, 9, 9)
    head = f"{len(new.net) - 1}."
    for k, v in base.state_dict().items():
        if k.startswith(head):
            assert new.state_dict()[k].shape[0] == 3  # a new last layer: 3 outputs
        else:
            np.testing.assert_allclose(new.state_dict()[k], v, atol=1e-5)
    assert new.meta["fine_tuned_from"]["new_head"] is True


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--dataset", "mnist"], "takes input (1, 9, 9) but mnist images are (1, 28, 28)"),
        (["--dataset", "xo", "--num-classes", "3"], "--num-classes 3, but xo has 2 classes"),
    ],
)
def test_model_file_that_does_not_fit_the_data(capsys, tmp_path, xo_model, extra, expected):
    argv = ["train", "--model", xo_model, *extra, "--out", tmp_path / "m.npz"]
    assert expected in one_line_error(*run(capsys, *argv)[::2])


def test_num_classes_is_for_model_files(capsys, tmp_path):
    argv = [
        "train",
        "--model",
        "xo",
        "--dataset",
        "xo",
        "--num-classes",
        2,
        "--out",
        tmp_path / "m",
    ]
    assert "--num-classes is for a model file" in one_line_error(*run(capsys, *argv)[::2])


# -- item 9: evaluate defaults to the data the model file records ------------------------


def test_evaluate_defaults_to_the_recorded_dataset_and_seed(capsys, xo_model):
    code, out, err = run(capsys, "evaluate", xo_model, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["data"]["dataset"] == "xo" and rep["data"]["from_model_file"] is True
    # the same test images as asking for them: xo's test set is drawn with the training seed
    code, out, err = run(capsys, "evaluate", xo_model, "--dataset", "xo", "--seed", 3, "--json")
    explicit = json.loads(out)
    assert explicit["data"]["from_model_file"] is False
    assert rep["n"] == explicit["n"] == 1000 and rep["confusion"] == explicit["confusion"]
    code, out, err = run(capsys, "evaluate", xo_model)
    assert code == 0 and out.startswith(f"data: xo (test split), recorded in {xo_model}\n")


def _tiny_mnist(root, n_test):
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 255, (n, 28, 28)).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return root


def test_evaluate_uses_the_recorded_data_root_and_data_dir_overrides(capsys, tmp_path):
    root, other = _tiny_mnist(tmp_path / "a", 20), _tiny_mnist(tmp_path / "b", 10)
    model = tmp_path / "m.npz"
    argv = ["train", "--model", "simple", "--dataset", "mnist", "--data-dir", root, "--epochs", 1]
    assert main([str(a) for a in [*argv, "--no-download", "--out", model, "-q"]]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "evaluate", model, "--no-download", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 20
    code, out, err = run(capsys, "evaluate", model, "--data-dir", other, "--no-download", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 10


def test_evaluate_a_model_that_records_no_data_says_what_to_give(capsys, tmp_path, xo_model):
    model = clearconv.load(xo_model)
    model.meta = {}
    clearconv.save(model, tmp_path / "bare.npz")
    line = one_line_error(*run(capsys, "evaluate", tmp_path / "bare.npz")[::2])
    assert "does not record the data" in line and "--dataset" in line


def test_evaluate_a_folder_that_moved_says_what_to_give(capsys, tmp_path):
    root = _stripes_folder(tmp_path / "data", per_class=6)
    model = tmp_path / "m.npz"
    argv = ["train", "--model", "simple", "--data", root, "--epochs", 1, "--out", model, "-q"]
    assert main([str(a) for a in argv]) == 0
    root.rename(tmp_path / "moved")
    line = one_line_error(*run(capsys, "evaluate", model)[::2])
    assert "not there any more" in line and "--data FOLDER" in line
    code, out, err = run(capsys, "evaluate", model, "--data", tmp_path / "moved", "--json")
    assert code == 0 and json.loads(out)["n"] == 12  # another path: all of it, nothing held out


# -- item 15: plots and the LR finder ------------------------------------------------------


def test_evaluate_plots_writes_pngs(capsys, tmp_path, stripes_model):
    plots = tmp_path / "plots" / "new"  # made when missing
    old = os.umask(0o022)
    try:
        code, out, err = run(capsys, "evaluate", stripes_model, "--plots", plots)
    finally:
        os.umask(old)
    assert code == 0, err
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["confusion.png", "curves.png", "mistakes.png"]
    for name in names:
        assert _is_png(plots / name)
        assert (plots / name).stat().st_mode & 0o777 == 0o644  # as the umask says
        assert f"wrote {plots / name}" in out


def test_evaluate_plots_curves_from_a_history_file(capsys, tmp_path, xo_model):
    model = clearconv.load(xo_model)
    assert model.meta.pop("history")
    clearconv.save(model, tmp_path / "old.npz")  # as files written before the history was kept
    code, out, err = run(capsys, "evaluate", tmp_path / "old.npz", "--plots", tmp_path / "p")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["confusion.png", "mistakes.png"]
    (tmp_path / "h.csv").write_text("epoch,train_loss,train_acc\n1,0.9,0.5\n2,0.5,0.8\n")
    argv = ["evaluate", tmp_path / "old.npz", "--plots", tmp_path / "p", "--history"]
    code, out, err = run(capsys, *argv, tmp_path / "h.csv")
    assert code == 0, err
    assert _is_png(tmp_path / "p" / "curves.png")


def test_train_plots_and_a_plots_path_that_is_a_file(capsys, tmp_path):
    argv = ["train", "--model", "xo", "--dataset", "xo", "--limit", 64, "--epochs", 2, "-q"]
    code, out, err = run(capsys, *argv, "--out", tmp_path / "m.npz", "--plots", tmp_path / "p")
    assert code == 0, err
    for name in ("confusion.png", "mistakes.png", "curves.png"):
        assert _is_png(tmp_path / "p" / name)
    (tmp_path / "file").write_text("")
    line = one_line_error(*run(capsys, *argv, "--out", tmp_path / "n.npz", "--plots",
                               tmp_path / "file")[::2])  # fmt: skip
    assert "--plots" in line and not (tmp_path / "n.npz").exists()


def test_find_lr_suggests_a_sensible_rate_and_saves_no_model(capsys, tmp_path):
    argv = ["train", "--model", "xo", "--dataset", "xo", "--find-lr", "--plots", tmp_path]
    code, out, err = run(capsys, *argv, "--out", tmp_path / "m.npz")
    assert code == 0, err
    match = re.search(r"suggested --lr (\S+) \(", out)
    assert match, out
    # the xo recipe trains well at 0.01; the range test should land within a decade or so
    assert 1e-3 <= float(match.group(1)) <= 0.1
    assert _is_png(tmp_path / "lr_finder.png")
    assert not (tmp_path / "m.npz").exists() and "not written" in err
    code, again, err = run(capsys, *argv)  # no --out needed; the same seed, the same answer
    assert code == 0 and again == out


def test_find_lr_reading_says_which_way_the_curve_went():
    from clearconv.cli.train import lr_reading
    from clearconv.lr_finder import LRFinderResult

    lrs = np.array([1e-4, 1e-3, 1e-2, 1e-1])

    def result(losses, diverged=False):
        return LRFinderResult(lrs, np.array(losses), 1e-3, 1e-3, diverged)

    why, other = lr_reading(result([2.0, 1.5, 1.0, 9.0], diverged=True))
    assert why == "a tenth of 0.01, where the loss was lowest" and "steepest" in other
    why, other = lr_reading(result([2.0, 1.5, 1.0, 0.8]))
    assert why == "the steepest descent of the loss" and "still falling at the end" in other
    why, other = lr_reading(result([2.0, 1.5, 1.0, 1.6]))  # rose, but under 4x its minimum
    assert "rose after its lowest point at 0.01" in other and "0.001" in other


def test_find_lr_library_restores_the_model_and_stops_when_the_loss_diverges(rng):
    from clearconv import data, zoo
    from clearconv.lr_finder import find_lr
    from clearconv.model import Model

    net, shape = zoo.build("xo", rng=rng)
    model = Model(net, shape, ["X", "O"])
    before = {k: v.copy() for k, v in model.state_dict().items()}
    ds = data.make_xo(512, np.random.default_rng(1))
    r = find_lr(model, ds, batch_size=32, optimizer="sgd", start_lr=1e-4, end_lr=1e4, steps=120)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    ratios = r.lrs[1:] / r.lrs[:-1]
    np.testing.assert_allclose(ratios, (1e4 / 1e-4) ** (1 / 119))  # an exponential sweep
    assert r.diverged and len(r.lrs) < 120  # SGD at lr 1e4 blows up well before the end
    assert r.losses[-1] > 4 * r.losses.min()
    assert r.suggestion == r.lr_min == r.lrs[np.argmin(r.losses)] / 10
    with pytest.raises(ValueError, match="steps"):
        find_lr(model, ds, steps=2)


def test_plots_without_matplotlib_fail_before_training(capsys, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    argv = ["train", "--model", "xo", "--dataset", "xo", "--limit", 32, "--out", tmp_path / "m.npz"]
    line = one_line_error(*run(capsys, *argv, "--plots", tmp_path / "p")[::2])
    assert "--plots needs matplotlib" in line
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "p").exists()
