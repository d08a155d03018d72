"""CIFAR-10 binary batches, safe tar extraction, image folders, MNIST preprocessing."""

import io
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from clearconv.data import (
    CIFAR10_CLASSES,
    DataError,
    DataMissingError,
    load_cifar10,
    load_image,
    load_image_folder,
    mnist_preprocess,
    safe_extract,
    verify_cifar10,
)


@pytest.fixture
def Image():
    """Pillow is an optional extra: only the image-file tests need it."""
    return pytest.importorskip("PIL.Image")


def _cifar_records(rng, n):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    blob = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1).tobytes()
    return images, labels, blob


def test_cifar10_from_tiny_binary(tmp_path, rng):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for i in range(1, 6):
        im, lab, blob = _cifar_records(rng, i)  # 1 + 2 + ... + 5 = 15 records
        (folder / f"data_batch_{i}.bin").write_bytes(blob)
        train_images.append(im)
        train_labels.append(lab)
    im, lab, blob = _cifar_records(rng, 4)
    (folder / "test_batch.bin").write_bytes(blob)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    images, labels, names = load_cifar10(tmp_path, "train", download=False)
    assert images.shape == (15, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, np.concatenate(train_images))
    np.testing.assert_array_equal(labels, np.concatenate(train_labels))
    assert labels.dtype == np.int64 and names == CIFAR10_CLASSES
    assert set(verify_cifar10(tmp_path).values()) == {"ok"}
    test = load_cifar10(tmp_path, "test", download=False)
    np.testing.assert_array_equal(test.images, im)
    # a record cut short is refused, naming the file
    (folder / "test_batch.bin").write_bytes(blob[:-1])
    with pytest.raises(DataError, match=r"test_batch.bin: expected a whole number of 3073"):
        load_cifar10(tmp_path, "test", download=False)
    assert verify_cifar10(tmp_path)["test_batch.bin"] == "bad size"


def test_cifar10_missing_message(tmp_path, monkeypatch):
    def offline(request, timeout=None):
        raise urllib.error.URLError("no network (fake)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataMissingError, match=r"put data_batch_1.bin.*cifar-10-batches-bin/"):
        load_cifar10(tmp_path, "train")


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data=b"abc"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_safe_extract(tmp_path):
    good = tmp_path / "good.tar.gz"
    _tar(good, [_file("cifar-10-batches-bin/a.bin")])
    out = safe_extract(good, tmp_path / "out")
    assert [p.read_bytes() for p in out] == [b"abc"]
    link = tarfile.TarInfo("cifar-10-batches-bin/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    for i, member in enumerate([_file("../evil.bin"), _file("/tmp/evil.bin"), (link, None)]):
        bad = tmp_path / f"bad{i}.tar.gz"
        _tar(bad, [_file("ok.bin"), member])
        with pytest.raises(DataError, match="refusing unsafe archive member"):
            safe_extract(bad, tmp_path / f"x{i}")
        assert not (tmp_path / f"x{i}" / "ok.bin").exists()  # checked before writing anything
    assert not (tmp_path / "evil.bin").exists()


def test_safe_extract_on_a_python_without_tarfile_filters(tmp_path, monkeypatch):
    """Python 3.11 before 3.11.4 (Debian 12's 3.11.2) has no ``filter=``: the
    member check alone guards, and good archives still extract."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good = tmp_path / "good.tar.gz"
    _tar(good, [_file("cifar-10-batches-bin/a.bin")])
    assert [p.read_bytes() for p in safe_extract(good, tmp_path / "out")] == [b"abc"]
    bad = tmp_path / "bad.tar.gz"
    _tar(bad, [_file("ok.bin"), _file("../evil.bin")])
    with pytest.raises(DataError, match="refusing unsafe archive member"):
        safe_extract(bad, tmp_path / "x")
    assert not (tmp_path / "evil.bin").exists()


@pytest.fixture
def folder(tmp_path, Image):
    """ROOT/{train,test}/{circle,square}/ with grey and RGB images of mixed sizes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for cls, value in (("square", 200), ("circle", 50)):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(10, 40, 2)
                if i % 2:
                    Image.new("L", (int(w), int(h)), value).save(d / f"{i}.png")
                else:
                    Image.new("RGB", (int(w), int(h)), (value, 0, 255)).save(d / f"{i}.jpg")
            (d / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_train_and_test(folder):
    images, labels, names = load_image_folder(folder, (16, 12), channels=3, split="train")
    assert images.shape == (6, 3, 16, 12) and images.dtype == np.uint8
    assert names == ["circle", "square"] and labels.tolist() == [0, 0, 0, 1, 1, 1]
    # grey files are replicated to RGB, RGB files keep their colours
    assert abs(int(images[1, 0, 8, 6]) - 50) <= 2 and images[1, 2, 8, 6] == images[1, 0, 8, 6]
    assert abs(int(images[3, 2, 8, 6]) - 255) <= 2
    test = load_image_folder(folder, (8, 8), channels=1, split="test", class_names=names)
    assert test.images.shape == (4, 1, 8, 8) and test.labels.tolist() == [0, 0, 1, 1]


def test_image_folder_errors(folder, tmp_path):
    with pytest.raises(DataError, match=r"class folders \['circle', 'square'\] are not among"):
        load_image_folder(folder, (8, 8), split="test", class_names=["cat"])
    (folder / "train" / "square" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken.png: cannot read image"):
        load_image_folder(folder, (8, 8), split="train")
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        load_image_folder(empty, (8, 8))
    with pytest.raises(ValueError, match=r"channels must be 1 \(grey\) or 3 \(RGB\), got 2"):
        load_image_folder(folder, (8, 8), channels=2)


def test_load_image_exif_alpha_and_bomb(tmp_path, monkeypatch, Image):
    im = Image.new("RGB", (6, 4), (0, 0, 0))
    im.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg", channels=1)
    assert x.shape == (1, 6, 4)  # turned upright: 4 wide, 6 high
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png", channels=3).min() == 255  # transparent -> white
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(DataError, match=r"t.png: refusing a possible decompression bomb"):
        load_image(tmp_path / "t.png")


def test_missing_pillow_message(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    # both installs: from PyPI and from a source checkout
    with pytest.raises(
        ImportError, match=r'pip install "clearconv\[cli\]".*pip install -e "\.\[cli\]"'
    ):
        load_image(tmp_path / "x.png")


def test_mnist_preprocess_light_background_digit():
    # a dark, thick "7" off-centre on light grey paper, photographed larger than MNIST
    page = np.full((90, 70, 3), 215, np.uint8)
    page[15:22, 30:62] = 30  # top bar
    diag = np.arange(50)
    for t in range(6):  # the slanted stroke, 6 pixels thick
        page[22 + diag, np.clip(58 - diag // 2 + t - 3, 0, 69)] = 30
    out = mnist_preprocess(page)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    ink = out > 0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20  # fits 20x20
    assert out.max() >= 200 and out[0].max() == 0 and out[:, 0].max() == 0  # inverted
    mass = out.astype(float)
    cy = mass.sum(1) @ np.arange(28) / mass.sum()
    cx = mass.sum(0) @ np.arange(28) / mass.sum()
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75
    # dark background input gives the same result as its inverse on light paper
    np.testing.assert_array_equal(mnist_preprocess(255 - page), out)
    assert mnist_preprocess(np.full((20, 20), 128, np.uint8)).max() == 0  # no ink
