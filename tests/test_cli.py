"""The command line end to end, through ``clearconv.cli.main(argv)``: small data the tests make.

Data: the X/O toy (generated), tiny IDX files under a temporary ``ROOT/mnist``
and tiny image folders drawn with Pillow. No test touches the network.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest

import clearconv
from clearconv.cli import CLIError, main
from clearconv.data import write_idx

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw  # noqa: E402


def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of one command."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ok(*argv) -> None:
    """Run a command that must succeed (its output is not checked)."""
    assert main([str(a) for a in argv]) == 0


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- data the tests make -------------------------------------------------------


def _digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 28, 28): a bright bar whose row encodes the label, plus noise."""
    images = rng.integers(0, 30, (len(labels), 28, 28)).astype(np.uint8)
    rows = 3 + 2 * labels
    images[np.arange(len(labels)), rows] = 255
    images[np.arange(len(labels)), rows + 1] = 255
    return images


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """A data root with a tiny MNIST (60 training, 20 test images) in IDX files."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = np.arange(n) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", _digit_images(labels, rng), gzip=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8), gzip=True)
    return root


def _shape_image(kind: str, size: tuple[int, int], rng) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(180, 256, 3)))
    d = ImageDraw.Draw(im)
    box = (w // 5, h // 5, 4 * w // 5, 4 * h // 5)
    colour = tuple(int(v) for v in rng.integers(0, 80, 3))
    if kind == "circle":
        d.ellipse(box, fill=colour)
    elif kind == "square":
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(w // 2, h // 5), (w // 5, 4 * h // 5), (4 * w // 5, 4 * h // 5)], fill=colour)
    return im


def _make_folder(root, classes, per_class, rng, fmt="png"):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            size = (int(rng.integers(12, 30)), int(rng.integers(12, 30)))  # mixed sizes
            _shape_image(c, size, rng).save(root / c / f"{i}.{fmt}")


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    """FOLDER/train/CLASS and FOLDER/test/CLASS with RGB shapes of mixed sizes."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(1)
    classes = ("circle", "square", "triangle")
    _make_folder(root / "train", classes, 8, rng)
    _make_folder(root / "test", classes, 3, rng)
    return root


@pytest.fixture(scope="module")
def xo_model(tmp_path_factory):
    """A model file trained on the X/O toy (a second or two)."""
    path = tmp_path_factory.mktemp("models") / "xo.npz"
    ok(
        "train",
        "--model",
        "xo",
        "--dataset",
        "xo",
        "--epochs",
        3,
        "--limit",
        400,
        "--out",
        path,
        "-q",
    )
    return path


@pytest.fixture(scope="module")
def lenet_model(tmp_path_factory, mnist_root):
    path = tmp_path_factory.mktemp("models") / "lenet5.npz"
    ok(
        "train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", mnist_root,
        "--epochs", 1, "--batch-size", 16, "--out", path, "--quiet", "--no-download",
    )  # fmt: skip
    return path


# -- train ---------------------------------------------------------------------


def test_train_xo_prints_epochs_and_test_accuracy_and_writes_the_model(capsys, tmp_path):
    out_path = tmp_path / "m.npz"
    code, out, err = run(
        capsys, "train", "--model", "xo", "--dataset", "xo", "--epochs", "2", "--limit", "200",
        "--out", out_path, "--seed", "3", "--history", tmp_path / "h.csv",
    )  # fmt: skip
    assert code == 0, err
    assert "test accuracy" in out and str(out_path) in out
    model = clearconv.load(out_path)
    assert model.class_names == ["X", "O"]
    assert model.input_shape == (1, 9, 9)
    meta = model.meta
    assert meta["epochs"] == 2 and meta["seed"] == 3 and meta["dataset"] == "xo"
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and meta["wall_time_s"] > 0
    assert "--model xo" in meta["command"] and "--seed 3" in meta["command"]
    assert model.mean is not None and model.std is not None
    header = (tmp_path / "h.csv").read_text().splitlines()
    assert len(header) == 3  # a header line and one line per epoch


def test_train_xo_learns_the_toy(capsys, xo_model):
    code, out, err = run(capsys, "evaluate", xo_model, "--dataset", "xo", "--json", "--seed", "7")
    assert code == 0, err
    assert json.loads(out)["accuracy"] >= 0.9


def test_same_seed_same_weights(capsys, tmp_path):
    paths = [tmp_path / f"{i}.npz" for i in range(3)]
    for path, seed in zip(paths, (5, 5, 6)):
        argv = ["train", "--model", "xo", "--dataset", "xo", "--epochs", "1", "--limit", "64"]
        ok(*argv, "--out", path, "--seed", seed, "--quiet")
    a, b, c = (clearconv.load(p).state_dict() for p in paths)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_train_lenet5_on_idx_files_records_digit_preprocessing(lenet_model):
    model = clearconv.load(lenet_model)
    assert model.input_shape == (1, 28, 28)
    assert model.class_names == [str(d) for d in range(10)]
    assert model.meta["preprocess"] == "mnist" and model.meta["train_images"] == 60


def test_train_on_folder_with_train_and_test(capsys, tmp_path, shapes_folder):
    out_path = tmp_path / "shapes.npz"
    code, out, err = run(
        capsys, "train", "--model", "lenet5", "--data", shapes_folder, "--input-shape", "3,16,16",
        "--epochs", "1", "--batch-size", "8", "--out", out_path, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    model = clearconv.load(out_path)
    assert model.input_shape == (3, 16, 16)
    assert model.class_names == ["circle", "square", "triangle"]
    assert model.meta["train_images"] == 24 and model.meta["test_images"] == 9
    # 8-bit images are standardised by their channels' statistics, as float ones are
    assert model.mean is not None and model.std is not None, "uint8 images left unnormalised"
    assert model.mean.shape == (3,) and np.all((0 < model.mean) & (model.mean < 1))
    assert np.all(model.std > 0)


def test_train_architecture_file_on_flat_folder_holds_out_a_test_set(capsys, tmp_path):
    rng = np.random.default_rng(2)
    _make_folder(tmp_path / "flat", ("circle", "square"), 10, rng, fmt="jpg")
    arch = tmp_path / "net.toml"
    arch.write_text(
        "input_shape = [1, 12, 12]\n"
        '[[layers]]\ntype = "Conv2d"\nout_channels = 4\nkernel_size = 3\n'
        '[[layers]]\ntype = "ReLU"\n'
        '[[layers]]\ntype = "MaxPool2d"\nkernel_size = 2\n'
        '[[layers]]\ntype = "Flatten"\n'
        '[[layers]]\ntype = "Linear"\nout_features = 2\n'
    )
    out_path = tmp_path / "net.npz"
    code, out, err = run(
        capsys, "train", "--model", arch, "--data", tmp_path / "flat", "--epochs", "2",
        "--out", out_path, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    model = clearconv.load(out_path)
    assert model.input_shape == (1, 12, 12)
    assert model.meta["train_images"] == 16 and model.meta["test_images"] == 4
    capsys.readouterr()
    code, out, err = run(capsys, "evaluate", out_path, "--data", tmp_path / "flat", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 4  # the images training held out, not all 20
    code, out, err = run(capsys, "summary", arch)
    assert code == 0 and "Total params" in out


def test_interrupted_run_resumes_to_the_same_model(capsys, tmp_path, monkeypatch):
    from clearconv.cli import train as train_cli

    base = ["train", "--model", "xo", "--dataset", "xo", "--limit", 96, "--epochs", 3, "--seed", 4]
    ok(*base, "--out", tmp_path / "whole.npz", "-q")

    def stop_after_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, after the epoch's checkpoint

    monkeypatch.setattr(train_cli, "_epoch_line", stop_after_epoch_2)
    ckpt = tmp_path / "ckpt.npz"
    code, _, err = run(capsys, *base, "--checkpoint", ckpt, "--out", tmp_path / "r.npz")
    assert code == 130 and "interrupted" in err
    assert ckpt.is_file() and not (tmp_path / "r.npz").exists()
    monkeypatch.undo()
    code, out, err = run(
        capsys, *base, "--checkpoint", ckpt, "--resume", "--out", tmp_path / "r.npz"
    )
    assert code == 0, err
    assert "epoch   3" in out and "epoch   2" not in out
    whole, resumed = (clearconv.load(tmp_path / f).state_dict() for f in ("whole.npz", "r.npz"))
    assert all(np.array_equal(whole[k], resumed[k]) for k in whole)


def test_resume_needs_a_matching_checkpoint(capsys, tmp_path):
    argv = ["train", "--model", "xo", "--dataset", "xo", "--limit", 32, "--out", tmp_path / "m"]
    line = one_line_error(*run(capsys, *argv, "--resume", "--checkpoint", tmp_path / "no.npz")[::2])
    assert "no.npz" in line


def test_validation_early_stopping_and_augment_settings(capsys, tmp_path):
    out_path = tmp_path / "m.npz"
    code, out, err = run(
        capsys, "train", "--model", "xo", "--dataset", "xo", "--limit", 80, "--epochs", 4,
        "--val-split", 0.25, "--early-stopping", 1, "--augment", "--lr", 0.005,
        "--history", tmp_path / "h.json", "--out", out_path,
    )  # fmt: skip
    assert code == 0, err
    assert "val_acc" in out
    meta = clearconv.load(out_path).meta
    assert meta["train_images"] == 60 and isinstance(meta["stopped_early"], bool)
    assert meta["settings"]["lr"] == 0.005 and meta["settings"]["augment"]["flip"] is False
    records = json.loads((tmp_path / "h.json").read_text())["records"]
    assert len(records) == meta["epochs"] and records[0]["val_loss"] is not None
    ok("train", "--model", "xo", "--dataset", "xo", "--limit", 32, "--epochs", 1, "-q",
       "--no-augment", "--out", out_path)  # fmt: skip
    assert clearconv.load(out_path).meta["settings"]["augment"] is None


# -- evaluate ------------------------------------------------------------------


def test_evaluate_json_is_one_object_with_accuracy_fraction(capsys, xo_model):
    code, out, err = run(capsys, "evaluate", xo_model, "--dataset", "xo", "--limit", "50", "--json")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    rep = json.loads(out)
    assert 0.0 <= rep["accuracy"] <= 1.0 and np.isfinite(rep["loss"])
    assert rep["n"] == 50
    assert [c["class"] for c in rep["per_class"]] == ["X", "O"]
    confusion = np.array(rep["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == 50
    assert rep["accuracy"] == pytest.approx(np.trace(confusion) / 50)
    for c in rep["per_class"]:
        assert 0.0 <= c["precision"] <= 1.0 and 0.0 <= c["recall"] <= 1.0


def test_evaluate_text_report(capsys, xo_model):
    code, out, err = run(capsys, "evaluate", xo_model, "--dataset", "xo", "--limit", "40")
    assert code == 0, err
    assert out.startswith("accuracy ") and "precision" in out and "confusion matrix" in out


def test_evaluate_mnist_from_data_dir(capsys, lenet_model, mnist_root):
    argv = ["evaluate", lenet_model, "--dataset", "mnist", "--data-dir", mnist_root, "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["n"] == 20 and 0.0 <= rep["accuracy"] <= 1.0
    assert len(rep["per_class"]) == 10


def test_evaluate_folder_uses_its_test_part(capsys, tmp_path, shapes_folder):
    path = tmp_path / "m.npz"
    argv = ["train", "--model", "simple", "--data", shapes_folder, "--input-shape", "1,12,12"]
    ok(*argv, "--epochs", 1, "--out", path, "--quiet")
    capsys.readouterr()
    code, out, err = run(capsys, "evaluate", path, "--data", shapes_folder, "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 9


def test_evaluate_refuses_a_dataset_of_another_shape(capsys, xo_model):
    line = one_line_error(*run(capsys, "evaluate", xo_model, "--dataset", "mnist")[::2])
    assert "(1, 9, 9)" in line and "(1, 28, 28)" in line


# -- predict -------------------------------------------------------------------


def _xo_pngs(folder, n=4):
    """Black-on-white drawings of the X/O toy, as a person would draw them."""
    from clearconv.data import make_xo

    folder.mkdir()
    ds = make_xo(n, np.random.default_rng(11), size=9)
    paths = []
    for i, img in enumerate(ds.images[:, 0]):
        pixels = np.where(img > 0, 0, 255).astype(np.uint8)  # ink black, paper white
        path = folder / f"{i}_{ds.class_names[ds.labels[i]]}.png"
        Image.fromarray(pixels).resize((27, 27), Image.Resampling.NEAREST).save(path)
        paths.append(path)
    return paths


def test_predict_json_top_k(capsys, tmp_path, xo_model):
    paths = _xo_pngs(tmp_path / "imgs")
    code, out, err = run(capsys, "predict", xo_model, *paths, "--top-k", "2", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert [r["file"] for r in rep["results"]] == [str(p) for p in paths]
    for r in rep["results"]:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert {t["class"] for t in r["top"]} == {"X", "O"}


def test_predict_reads_drawings_of_x_and_o(capsys, tmp_path, xo_model):
    paths = _xo_pngs(tmp_path / "imgs", n=12)
    code, out, err = run(capsys, "predict", xo_model, *paths, "--top-k", "1", "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    right = sum(r["file"].endswith(f"_{r['top'][0]['class']}.png") for r in results)
    assert right >= 10  # black ink on white paper became the toy's +1 ink on -1


def test_predict_a_folder_prints_a_table(capsys, tmp_path, xo_model):
    paths = _xo_pngs(tmp_path / "imgs", n=3)
    code, out, err = run(capsys, "predict", xo_model, tmp_path / "imgs")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["image", "class", "prob"]
    assert len(lines) == 1 + len(paths)


def test_predict_digit_model_uses_mnist_preprocessing(capsys, tmp_path, lenet_model):
    # a dark "1" on light paper, larger than 28x28: needs inverting, cropping, centring
    page = np.full((60, 44), 230, np.uint8)
    page[8:52, 20:25] = 15
    Image.fromarray(page).save(tmp_path / "one.png")
    Image.fromarray(page).convert("RGB").save(tmp_path / "one_rgb.jpg")
    argv = ["predict", lenet_model, tmp_path / "one.png", tmp_path / "one_rgb.jpg", "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["mnist_preprocess"] is True and rep["top_k"] == 3
    assert len(rep["results"]) == 2
    code, out, err = run(capsys, *argv, "--no-mnist-preprocess")
    assert code == 0 and json.loads(out)["mnist_preprocess"] is False


# -- summary -------------------------------------------------------------------


def test_summary_lenet5_has_61706_parameters(capsys):
    code, out, err = run(capsys, "summary", "lenet5")
    assert code == 0, err
    assert "61,706" in out


def test_summary_of_a_model_file_and_json(capsys, xo_model):
    code, out, err = run(capsys, "summary", xo_model, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["input_shape"] == [1, 9, 9]
    assert rep["total_params"] == sum(p.data.size for p in clearconv.load(xo_model).parameters())


def test_summary_input_shape(capsys):
    code, out, err = run(capsys, "summary", "resnet", "--input-shape", "3,64,64", "--json")
    assert code == 0, err
    assert json.loads(out)["input_shape"] == [3, 64, 64]


# -- datasets ------------------------------------------------------------------


def test_datasets_list(capsys, mnist_root):
    code, out, err = run(capsys, "datasets", "list", "--data-dir", mnist_root, "--json")
    assert code == 0, err
    rep = json.loads(out)
    status = {d["name"]: d["status"] for d in rep["datasets"]}
    assert status == {
        "mnist": "present",
        "fashion-mnist": "missing",
        "cifar10": "missing",
        "xo": "generated",
        "fsdd": "missing",
    }
    code, out, err = run(capsys, "datasets", "list", "--data-dir", mnist_root)
    assert code == 0 and str(mnist_root) in out
    # it computes nothing, so it offers no --threads to set
    code, _, err = run(capsys, "datasets", "list", "--threads", "2")
    assert code == 2 and "unrecognized arguments: --threads 2" in err
    assert "--threads" not in run(capsys, "datasets", "--help")[1]


def test_datasets_verify_flags_files_that_are_not_mnist(capsys, mnist_root):
    code, out, err = run(capsys, "datasets", "verify", "mnist", "--data-dir", mnist_root, "--json")
    assert code == 1
    rep = json.loads(out)
    assert rep["ok"] is False and set(rep["files"].values()) == {"bad checksum"}
    assert len(err.strip().splitlines()) == 1 and "not complete" in err


def test_datasets_fetch_without_network_says_what_to_do(capsys, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    line = one_line_error(*run(capsys, "datasets", "fetch", "mnist", "--data-dir", tmp_path)[::2])
    assert "train-images-idx3-ubyte.gz" in line and str(tmp_path / "mnist") in line


# -- errors: one line, exit 2, no traceback ------------------------------------


def test_train_mnist_without_files_and_network_says_what_to_do(capsys, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    argv = ["train", "--model", "lenet5", "--dataset", "mnist", "--epochs", "1"]
    code, _, err = run(capsys, *argv, "--out", tmp_path / "m.npz", "--data-dir", tmp_path)
    line = one_line_error(code, err)
    assert "MNIST not found" in line and "train-images-idx3-ubyte.gz" in line
    assert str(tmp_path / "mnist") in line and "clearconv datasets fetch mnist" in line
    assert not (tmp_path / "m.npz").exists()


def test_data_dir_defaults_to_clearconv_data(capsys, tmp_path, monkeypatch, mnist_root):
    monkeypatch.setenv("CLEARCONV_DATA", str(mnist_root))
    code, out, err = run(capsys, "datasets", "list", "--json")
    assert code == 0 and json.loads(out)["root"] == str(mnist_root)


# Each case names the message it expects: every internal error also exits 2,
# so the exit code alone cannot tell the right refusal from an accident.
# MODEL and PNG stand for a real model file and a real image, so that the
# check under test is the one that refuses.
XO = ["train", "--model", "xo", "--dataset", "xo"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "missing.npz", "--dataset", "xo"], r"missing\.npz: model file not found"),
        (["predict", "missing.npz", "PNG"], r"missing\.npz: model file not found"),
        (["summary", "missing.npz"], r"missing\.npz: model file not found"),
        (["summary", "no-such-model"], r"unknown model 'no-such-model'"),
        (["summary", "missing.toml"], r"missing\.toml: architecture file not found"),
        (
            ["summary", "lenet5", "--input-shape", "1,28"],
            r"lenet5 cannot take inputs of shape \(1, 28\).*expected input of shape \(N, 1, H, W\)",
        ),
        (
            ["summary", "lenet5", "--input-shape", "a,b,c"],
            r"--input-shape must be C,H,W .*positive integers.*got 'a,b,c'",
        ),
        (
            ["summary", "lenet5", "--input-shape", "1,0,28"],
            r"--input-shape must be C,H,W .*positive integers.*got '1,0,28'",
        ),
        (
            ["train", "--model", "no-such-model", "--dataset", "xo", "--out", "m.npz"],
            r"no-such-model",
        ),
        ([*XO, "--out", "m.npz", "--epochs", "0"], r"--epochs must be >= 1, got 0"),
        ([*XO, "--out", "m.npz", "--epochs", "x"], r"--epochs: invalid int value: 'x'"),
        (
            ["train", "--model", "xo", "--dataset", "imagenet", "--out", "m.npz"],
            r"--dataset: invalid choice: 'imagenet'",
        ),
        (XO, r"--out PATH is required"),
        ([*XO, "--out", "no/such/dir/m.npz"], r"--out.*no/such/dir"),
        ([*XO, "--out", "m.npz", "--resume"], r"--resume needs --checkpoint"),
        ([*XO, "--out", "m.npz", "--early-stopping", "2"], r"--early-stopping needs validation"),
        (
            [*XO, "--out", "m.npz", "--val-split", "1.5"],
            r"--val-split must be in \[0, 1\), got 1\.5",
        ),
        ([*XO, "--out", "m.npz", "--history", "h.txt"], r"--history must end in \.csv or \.json"),
        (
            [
                "train",
                "--model",
                "xo",
                "--dataset",
                "mnist",
                "--input-shape",
                "1,9,9",
                "--out",
                "m",
            ],
            r"--input-shape \(1, 9, 9\) does not match mnist's \(1, 28, 28\)",
        ),
        (["predict", "MODEL", "PNG", "--top-k", "0"], r"--top-k must be >= 1, got 0"),
        (
            ["train", "--model", "xo", "--data", "no-such-folder", "--out", "m.npz"],
            r"no-such-folder: no such folder",
        ),
        (["datasets", "fetch"], r"needs a data set name: mnist, fashion-mnist, cifar10"),
        (["datasets", "verify", "imagenet"], r"unknown dataset 'imagenet'"),
        (["datasets", "fetch", "xo"], r"xo is generated on the fly"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, monkeypatch, xo_model, argv, expected):
    monkeypatch.chdir(tmp_path)
    png = _xo_pngs(tmp_path / "imgs", n=1)[0]
    argv = [{"MODEL": xo_model, "PNG": png}.get(a, a) for a in argv]
    line = one_line_error(*run(capsys, *argv)[::2])
    assert re.search(expected, line), line


def test_bad_model_file_and_bad_image(capsys, tmp_path, xo_model):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    line = one_line_error(*run(capsys, "evaluate", tmp_path / "bad.npz", "--dataset", "xo")[::2])
    assert "bad.npz" in line
    (tmp_path / "bad.png").write_bytes(b"not a png")
    line = one_line_error(*run(capsys, "predict", xo_model, tmp_path / "bad.png")[::2])
    assert "bad.png" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(*run(capsys, "predict", xo_model, empty)[::2])
    assert "no image files" in line


# -- options each changing what a command does -----------------------------------

# Every subcommand, with an option only its own help lists.
OWN_OPTION = {
    "train": "--optimizer",
    "evaluate": "--split",
    "predict": "--top-k",
    "summary": "--input-shape",
    "datasets": "{list,fetch,verify}",
    "inspect": "--scale",
    "xo": "--samples",
    "serve": "--max-bytes",
    "export": "--opset",
    "import": "IN.onnx",
    "recipe": "--json",
}


def test_help_test_covers_every_command():
    from clearconv.cli import COMMANDS

    assert sorted(OWN_OPTION) == sorted(c.rstrip("_") for c in COMMANDS)


@pytest.mark.parametrize("command", sorted(OWN_OPTION))
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: clearconv {command}" in out
    assert OWN_OPTION[command] in out
    assert ("--threads" in out) == (command != "datasets")  # it computes nothing


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"clearconv {clearconv.__version__}"


def test_debug_shows_the_traceback_that_is_otherwise_one_line(capsys, monkeypatch):
    from clearconv import zoo

    def broken(*args, **kwargs):
        raise RuntimeError("boom inside the library")

    monkeypatch.setattr(zoo, "build", broken)
    code, _, err = run(capsys, "summary", "lenet5")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "internal error: RuntimeError: boom inside the library" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="boom inside the library"):
        main(["--debug", "summary", "lenet5"])  # re-raised: Python prints the traceback
    # a user error too: with --debug it is raised, not turned into one line
    with pytest.raises(CLIError, match="--input-shape"):
        main(["--debug", "summary", "lenet5", "--input-shape", "1,0,28"])


def test_threads_limits_blas_inside_the_command(capsys, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from clearconv import zoo

    seen, build = [], zoo.build

    def spy(*args, **kwargs):
        seen.append(
            {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
        )
        return build(*args, **kwargs)

    monkeypatch.setattr(zoo, "build", spy)
    before = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    for n in (1, 2):
        assert run(capsys, "summary", "lenet5", "--threads", n)[0] == 0
        assert seen.pop() == {n}
    after = {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    assert after == before  # given back when the command ends
    # the wording is being reworded elsewhere: only the stable part is checked
    line = one_line_error(*run(capsys, "summary", "lenet5", "--threads", 0)[::2])
    assert re.search(r"(--threads|blas_threads).*\b0\b", line), line


def test_train_passes_optimizer_schedule_weight_decay_and_label_smoothing(
    capsys, tmp_path, monkeypatch
):
    from clearconv import train as train_api

    calls, fit = [], train_api.fit

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return fit(*args, **kwargs)

    monkeypatch.setattr(train_api, "fit", spy)
    base = ["train", "--model", "xo", "--dataset", "xo", "--limit", 64, "--epochs", 3, "-q"]
    ok(*base, "--lr", 0.01, "--out", tmp_path / "plain.npz")
    ok(
        *base, "--lr", 0.01, "--optimizer", "sgd", "--schedule", "step", "--weight-decay", 0.05,
        "--label-smoothing", 0.2, "--history", tmp_path / "h.json", "--out", tmp_path / "m.npz",
    )  # fmt: skip
    given = {"optimizer": "sgd", "schedule": "step", "weight_decay": 0.05, "label_smoothing": 0.2}
    # fit gets the optimizer as an object; the schedule shows in the rates below
    opt, plain_opt = calls[-1]["optimizer"], calls[0]["optimizer"]
    assert type(opt).__name__ == "SGD" and type(plain_opt).__name__ != "SGD"
    assert opt.weight_decay == 0.05 != plain_opt.weight_decay
    assert calls[-1]["label_smoothing"] == 0.2 != calls[0]["label_smoothing"]
    meta = clearconv.load(tmp_path / "m.npz").meta
    assert {k: meta["settings"][k] for k in given} == given
    # 'step' divides the rate by 10 each epoch here (every ceil(3 / 3) epochs)
    lrs = [r["lr"] for r in json.loads((tmp_path / "h.json").read_text())["records"]]
    assert len(lrs) == 3 and all(a / b == pytest.approx(10) for a, b in itertools.pairwise(lrs))
    a, b = (clearconv.load(tmp_path / f).state_dict() for f in ("plain.npz", "m.npz"))
    assert not all(np.array_equal(a[k], b[k]) for k in a)


def test_evaluate_split_train_uses_the_training_images(capsys, lenet_model, mnist_root):
    argv = ["evaluate", lenet_model, "--dataset", "mnist", "--data-dir", mnist_root, "--json"]
    reports = {}
    for split in ("train", "test"):
        code, out, err = run(capsys, *argv, "--split", split)
        assert code == 0, err
        reports[split] = json.loads(out)
    assert reports["train"]["n"] == 60 and reports["test"]["n"] == 20
    assert np.array(reports["train"]["confusion"]).sum(axis=1).tolist() == [6] * 10


def test_inspect_scale_changes_the_feature_map_colours(capsys, tmp_path, xo_model):
    png = _xo_pngs(tmp_path / "imgs", n=1)[0]
    pages = {}
    for scale in ("shared", "per_map"):
        out = tmp_path / f"{scale}.html"
        code, _, err = run(
            capsys, "inspect", xo_model, "--image", png, "--out", out, "--scale", scale
        )
        assert code == 0, err
        pages[scale] = out.read_text()
    assert pages["shared"] != pages["per_map"]
    code, _, err = run(capsys, "inspect", xo_model, "--image", png, "--out", tmp_path / "d.html")
    assert code == 0 and (tmp_path / "d.html").read_text() == pages["shared"]  # the default


def test_serve_binds_the_host_given_and_limits_bodies_to_max_bytes(capsys, xo_model, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer Starlette suggests the httpx2 fork
        from starlette.testclient import TestClient

    served = {}

    def fake_run(server, sockets=None):  # the bound socket and the app, not a server loop
        served.update(app=server.config.app, host=sockets[0].getsockname()[0])

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    code, out, err = run(capsys, "serve", xo_model, "--host", "0.0.0.0", "--port", 0,
                         "--max-bytes", 2048)  # fmt: skip
    assert code == 0, err
    assert served["host"] == "0.0.0.0" and "http://0.0.0.0:" in out
    with TestClient(served["app"]) as client:
        png = {"content-type": "image/png"}
        big = client.post("/api/predict", content=b"\x89PNG" + bytes(2048), headers=png)
        assert big.status_code == 413 and "limit" in big.json()["error"]
        small = client.post("/api/predict", content=b"\x89PNG" + bytes(1000), headers=png)
        assert small.status_code == 400  # read (and refused as an image), not over the limit


def test_export_opset_is_written_into_the_file(capsys, tmp_path):
    onnx = pytest.importorskip("onnx")
    from clearconv.onnx import OPSET

    for opset in (13, None):
        path = tmp_path / f"{opset}.onnx"
        extra = [] if opset is None else ["--opset", opset]
        code, _, err = run(capsys, "export", "lenet5", path, *extra)
        assert code == 0, err
        assert onnx.load(path).opset_import[0].version == (opset or OPSET)
