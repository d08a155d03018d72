"""X/O toy, batching, normalisation statistics and batch augmentation."""

import numpy as np
import pytest

from clearconv.data import (
    Augment,
    Dataset,
    channel_stats,
    iterate_batches,
    make_xo,
    normalize,
    random_affine,
    random_crop,
    random_flip,
    random_shift,
    shift_images,
    train_val_split,
    xo_canonical,
)

# ---- X/O -------------------------------------------------------------------------------


def test_xo_canonical_is_the_tutorials():
    x, o = xo_canonical()[:, 0]
    assert xo_canonical().dtype == np.float32 and set(np.unique(x)) == {-1.0, 1.0}
    ink = x > 0
    i = np.arange(1, 8)
    assert ink[i, i].all() and ink[i, 8 - i].all()
    assert ink.sum() == 13 and not ink[0].any() and not ink[:, 8].any()
    ring = o > 0
    assert ring.sum() == 16 and not ring[4, 4] and (ring == ring[::-1]).all()
    assert (ring == ring[:, ::-1]).all() and (ring == ring.T).all()


def test_make_xo_properties():
    ds = make_xo(1000, np.random.default_rng(0))
    assert ds.images.shape == (1000, 1, 9, 9) and ds.images.dtype == np.float32
    assert set(np.unique(ds.images)) == {-1.0, 1.0}
    assert ds.labels.dtype == np.int64 and np.bincount(ds.labels).tolist() == [500, 500]
    assert ds.class_names == ["X", "O"]
    ink = (ds.images > 0).sum(axis=(1, 2, 3))
    assert ink.min() >= 8 and ink.max() <= 50  # every image shows a shape, none is a blob
    assert len(np.unique(ds.images.reshape(1000, -1), axis=0)) > 950  # varied
    again = make_xo(1000, np.random.default_rng(0))
    np.testing.assert_array_equal(again.images, ds.images)
    assert make_xo(3, np.random.default_rng(0), size=15).images.shape == (3, 1, 15, 15)


def test_template_matching_fails_but_classes_are_distinct():
    test = make_xo(1000, np.random.default_rng(1))
    flat = test.images.reshape(len(test), -1)
    # nearest of the two exact tutorial images (most agreeing pixels)
    templates = xo_canonical().reshape(2, -1)
    template_acc = (np.argmax(flat @ templates.T, axis=1) == test.labels).mean()
    assert template_acc < 0.97
    # yet the label is a function of the image: 1-nearest neighbour among many
    # other random drawings is (almost) always right
    train = make_xo(3000, np.random.default_rng(2))
    nearest = train.labels[np.argmax(flat @ train.images.reshape(len(train), -1).T, axis=1)]
    assert (nearest == test.labels).mean() >= 0.99


# ---- Dataset, batches, split -------------------------------------------------------------


def test_iterate_batches_seeded_and_complete():
    a = [b.tolist() for b in iterate_batches(10, 3, np.random.default_rng(5))]
    b = [b.tolist() for b in iterate_batches(10, 3, np.random.default_rng(5))]
    c = [b.tolist() for b in iterate_batches(10, 3, np.random.default_rng(6))]
    assert a == b and a != c and [len(x) for x in a] == [3, 3, 3, 1]
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert [len(x) for x in iterate_batches(10, 3, shuffle=False, drop_last=True)] == [3, 3, 3]
    assert list(iterate_batches(0, 4, shuffle=False)) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        list(iterate_batches(10, 0))


def test_train_val_split_and_dataset():
    tr, va = train_val_split(101, 0.1, np.random.default_rng(0))
    assert len(va) == 10 and len(tr) == 91 and not set(tr) & set(va)
    tr2, va2 = train_val_split(101, 0.1, np.random.default_rng(0))
    assert (va == va2).all()
    assert len(train_val_split(5, 0.0, np.random.default_rng(0))[1]) == 0
    with pytest.raises(ValueError, match=r"fraction must be < 1\.0"):
        train_val_split(5, 1.0)
    ds = Dataset(np.arange(5), np.array([0, 1, 1, 0, 1], np.uint8), ["a", "b"])
    assert ds.labels.dtype == np.int64 and ds[va2[va2 < 5]].class_names == ["a", "b"]
    with pytest.raises(ValueError, match="same length, got 5 and 4"):
        Dataset(np.arange(5), np.arange(4), ["a"])


# ---- normalisation -----------------------------------------------------------------------


def test_channel_stats_matches_numpy_in_chunks():
    x = np.random.default_rng(0).integers(0, 256, (37, 3, 5, 6), dtype=np.uint8)
    mean, std = channel_stats(x, chunk=4)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-9)
    m1, s1 = channel_stats(x[:, 0])  # (N, H, W): one channel
    assert m1.shape == (1,) and m1[0] == pytest.approx(mean[0])
    assert channel_stats(np.ones((2, 1, 2, 2), np.float32))[1].tolist() == [1.0]  # constant


def test_normalize_units_and_errors():
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 5, 5), dtype=np.uint8)
    mean, std = channel_stats(x)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    np.testing.assert_allclose(normalize(x / 255.0, mean, std), z, atol=1e-5)  # same units
    assert normalize(x[:, :1], [0.5], [0.5]).shape == (4, 1, 5, 5)
    with pytest.raises(ValueError, match="expected images with 3 channels at axis -3"):
        normalize(x[:, :2], mean, std)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(x, mean, [1, 0, 1])


# ---- augmentation ------------------------------------------------------------------------


def _dots(n=6, h=9, w=11):
    x = np.zeros((n, 2, h, w), np.float32)
    x[:, :, h // 2, w // 2] = 1.0
    return x


def test_shift_images_moves_mass_exactly():
    x = _dots(3)
    out = shift_images(x, [2, -1, 0], [0, 3, -4])
    for k, (dy, dx) in enumerate([(2, 0), (-1, 3), (0, -4)]):
        assert out[k, :, 4 + dy, 5 + dx].tolist() == [1.0, 1.0] and out[k].sum() == 2.0
    big = shift_images(x, [20, 0, 0], [0, 0, 0], fill=-1.0)  # shifted out entirely
    assert (big[0] == -1.0).all()


def test_random_shift_distribution_and_determinism():
    x = _dots(400)
    out = random_shift(x, 2, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, random_shift(x, 2, np.random.default_rng(0)))
    assert (out.sum(axis=(1, 2, 3)) == 2.0).all()  # mass kept (it stays in the frame)
    ys, xs = np.nonzero(out[:, 0])[1:]
    dy, dx = ys - 4, xs - 5
    assert set(dy) == set(dx) == set(range(-2, 3))  # every offset in [-2, 2] occurs
    assert abs(dy.mean()) < 0.3 and abs(dx.mean()) < 0.3
    assert (out[:, 0] == out[:, 1]).all()  # channels move together


def test_random_crop_and_flip():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    crops = random_crop(x, (2, 3), np.random.default_rng(0))
    assert crops.shape == (2, 1, 2, 3)
    for k in range(2):  # each crop is a contiguous window of its own image
        r, c = np.argwhere(x[k, 0] == crops[k, 0, 0, 0])[0]
        np.testing.assert_array_equal(crops[k, 0], x[k, 0, r : r + 2, c : c + 3])
    flipped = random_flip(x, np.random.default_rng(0), p=1.0)
    np.testing.assert_array_equal(flipped, x[..., ::-1])
    np.testing.assert_array_equal(random_flip(x, np.random.default_rng(0), p=0.0), x)


def test_random_affine():
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(random_affine(x, rng, rotate=0.0, scale=0.0), x, atol=1e-6)
    # a centred square rotated by up to 10 degrees keeps its centre and roughly its area
    sq = np.zeros((50, 1, 21, 21), np.float32)
    sq[:, :, 6:15, 6:15] = 1.0
    out = random_affine(sq, np.random.default_rng(1), rotate=10.0, scale=0.0)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert not np.allclose(out, sq)
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 81.0, rtol=0.05)
    cy = (out[:, 0].sum(axis=2) @ np.arange(21)) / out[:, 0].sum(axis=(1, 2))
    np.testing.assert_allclose(cy, 10.0, atol=0.05)
    # zooming in (scale only) spreads the square, zooming out shrinks it
    zoom = random_affine(sq, np.random.default_rng(2), rotate=0.0, scale=0.3).sum(axis=(1, 2, 3))
    assert zoom.min() < 75 and zoom.max() > 90


def test_augment_shapes_dtypes_determinism():
    x = np.random.default_rng(0).random((8, 3, 16, 16)).astype(np.float32)
    aug = Augment(shift=2, rotate=10, scale=0.1, flip=True)
    a = aug(x, np.random.default_rng(3))
    b = aug(x, np.random.default_rng(3))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, aug(x, np.random.default_rng(4)))
    np.testing.assert_array_equal(Augment(0, 0, 0)(x, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\), got \(16, 16\)"):
        aug(x[0, 0], np.random.default_rng(0))
    with pytest.raises(TypeError, match="shift must be an int"):
        Augment(shift=1.5)
