"""Text: tokens, the vocabulary, CSV files; the sequence layers (Embedding, Permute,
AdaptiveMaxPool1d) against PyTorch and finite differences; the text CNN end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clearconv import nn, optim, zoo
from clearconv.data import DataError
from clearconv.data.text import Vocab, load_text_folder, read_text_csv, tokenize
from clearconv.nn import AdaptiveMaxPool1d, Embedding, Permute
from tests.gradcheck import check_layer, numerical_grad

SHARED = Path(__file__).parents[2] / "shared/datasets"


# -- tokens and vocabulary ------------------------------------------------------------
def test_tokens_are_lower_case_words_and_marks():
    assert tokenize("Don't SEE it... 5 stars!") == [
        "don't", "see", "it", ".", ".", ".", "5", "stars", "!",
    ]  # fmt: skip


def test_vocab_orders_by_count_and_maps_unknowns_and_padding():
    v = Vocab.build([["b", "a", "a"], ["a", "b", "c"]], min_count=1, max_len=5)
    assert v.tokens == ["<pad>", "<unk>", "a", "b", "c"]
    assert v.encode(["c", "x", "a"]).tolist() == [4, 1, 2, 0, 0]
    assert v.encode(list("abcabcabc")).shape == (5,)  # long sentences are cut
    assert Vocab.from_dict(v.to_dict()).tokens == v.tokens
    assert Vocab.build([["a", "b", "a"]], min_count=2).tokens == ["<pad>", "<unk>", "a"]


def _csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header.split(","))
        w.writerows(rows)
    return path


def test_csv_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_text_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="expected columns text,label, got sentence,y"):
        read_text_csv(_csv(tmp_path / "a.csv", [("x", "1")], "sentence,y"))
    with pytest.raises(DataError, match="line 3 has an empty text or label"):
        read_text_csv(_csv(tmp_path / "b.csv", [("good", "pos"), ("", "neg")]))
    (tmp_path / "c.csv").write_bytes(b"text,label\n\xff\xfe,x\n")
    with pytest.raises(DataError, match="not a readable UTF-8 CSV"):
        read_text_csv(tmp_path / "c.csv")


def test_text_folder_builds_the_vocabulary_from_train_only(tmp_path):
    _csv(tmp_path / "train.csv", [("a fine film", "fresh"), ("a dull film", "rotten")])
    _csv(tmp_path / "test.csv", [("a new film", "fresh")])
    train, test, vocab = load_text_folder(tmp_path, max_len=4)
    assert train.class_names == ["fresh", "rotten"] and test.labels.tolist() == [0]
    assert "new" not in vocab.tokens and test.images[0].tolist()[:3] == [
        vocab.tokens.index("a"), 1, vocab.tokens.index("film")]  # fmt: skip
    _csv(tmp_path / "test.csv", [("x", "meh")])
    with pytest.raises(DataError, match=r"labels not in train\.csv: meh"):
        load_text_folder(tmp_path)


@pytest.mark.skipif(not (SHARED / "rt-polarity").is_dir(), reason="no ../shared rt-polarity")
def test_the_shared_rt_polarity_split():
    train, test, vocab = load_text_folder(SHARED / "rt-polarity")
    assert (len(train), len(test)) == (11_477, 1_275)
    assert train.class_names == ["fresh", "rotten"] and len(vocab) > 10_000


# -- layers ----------------------------------------------------------------------------------
def test_embedding_matches_torch_with_repeats_and_padding():
    torch = pytest.importorskip("torch")
    ours = Embedding(7, 3, padding_idx=2, rng=np.random.default_rng(0), dtype=np.float64)
    theirs = torch.nn.Embedding(7, 3, padding_idx=2).double()
    theirs.weight.data = torch.tensor(ours.weight.data)
    idx = np.array([[1, 2, 1, 6], [0, 1, 2, 2]])
    y = ours(idx)
    yt = theirs(torch.tensor(idx))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    g = np.random.default_rng(1).standard_normal(y.shape)
    assert ours.backward(g) is None
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]


def test_embedding_weight_gradient_by_finite_differences():
    emb = Embedding(5, 2, rng=np.random.default_rng(0), dtype=np.float64)
    idx = np.array([[0, 4, 4, 1]])
    r = np.random.default_rng(2).standard_normal((1, 4, 2))
    emb(idx)
    emb.backward(r)
    numeric = numerical_grad(lambda: float(np.sum(emb(idx) * r)), emb.weight.data)
    np.testing.assert_allclose(emb.weight.grad, numeric, rtol=1e-6, atol=1e-9)


def test_embedding_errors():
    emb = Embedding(4, 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"indices in \[0, 4\), got values from 0 to 9"):
        emb(np.array([[0, 9]]))
    with pytest.raises(TypeError, match="expected integer indices, got float32"):
        emb(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="padding_idx must be within"):
        Embedding(4, 2, padding_idx=4)
    with pytest.raises(RuntimeError, match=r"Embedding\(4, 2\)\.backward called before forward"):
        emb.backward(np.ones((1, 2, 2), np.float32))
    pool = AdaptiveMaxPool1d(2)
    with pytest.raises(RuntimeError, match=r"AdaptiveMaxPool1d\(output_size=2\)\.backward called"):
        pool.backward(np.ones((1, 1, 2), np.float32))


@pytest.mark.parametrize("length, out", [(7, 1), (7, 3), (12, 4), (5, 5), (9, 2)])
def test_adaptive_max_pool_1d_matches_torch(length, out):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(length).standard_normal((2, 3, length))
    layer = AdaptiveMaxPool1d(out)
    y = layer(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.AdaptiveMaxPool1d(out)(xt)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    g = np.random.default_rng(3).standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12)
    assert layer.output_shape(x.shape) == y.shape


@pytest.mark.parametrize("make, shape", [(lambda: AdaptiveMaxPool1d(3), (2, 3, 8)),
                                         (lambda: Permute([0, 2, 1]), (2, 3, 4)),
                                         (lambda: Permute([2, 0, 1]), (2, 3, 4))])  # fmt: skip
def test_gradcheck(make, shape):
    check_layer(make(), np.random.default_rng(0).standard_normal(shape))


# -- the text CNN ----------------------------------------------------------------------------
def test_textcnn_matches_a_torch_twin():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    net, shape = zoo.build("textcnn", vocab_size=50, num_classes=3, rng=np.random.default_rng(0))
    assert shape == (56,)

    class Kim(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(50, 128, padding_idx=0)
            self.convs = tnn.ModuleList(tnn.Conv1d(128, 100, w) for w in (3, 4, 5))
            self.fc = tnn.Linear(300, 3)

        def forward(self, x):
            e = self.embed(x).permute(0, 2, 1)
            return self.fc(torch.cat([c(e).relu().amax(2) for c in self.convs], 1))

    kim = Kim()
    sd = {k: torch.tensor(np.asarray(v)) for k, v in net.state_dict().items()}
    kim.embed.weight.data, kim.fc.weight.data, kim.fc.bias.data = sd["0.weight"], sd["5.weight"],\
        sd["5.bias"]  # fmt: skip
    for i, conv in enumerate(kim.convs):
        conv.weight.data, conv.bias.data = sd[f"2.{i}.0.weight"], sd[f"2.{i}.0.bias"]
    x = np.random.default_rng(1).integers(0, 50, (4, 56))
    np.testing.assert_allclose(net(x), kim(torch.tensor(x)).detach().numpy(), rtol=1e-4,
                               atol=1e-4)  # fmt: skip


def test_textcnn_learns_which_words_mean_what():
    rng = np.random.default_rng(0)
    # Sentences of filler words; class 1 when the word "good" (3) is anywhere in them.
    x = rng.integers(4, 40, (400, 20))
    y = rng.integers(0, 2, 400)
    x[y == 1, rng.integers(0, 20, int(y.sum()))] = 3
    net = nn.from_config(zoo.config("textcnn", vocab_size=40), (20,), rng=rng)
    loss, opt = nn.CrossEntropyLoss(), optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(4):
        for i in range(0, 400, 40):
            loss(net(x[i : i + 40], training=True), y[i : i + 40])
            opt.zero_grad()
            net.backward(loss.backward())
            opt.step()
    xt = rng.integers(4, 40, (100, 20))
    yt = rng.integers(0, 2, 100)
    xt[yt == 1, rng.integers(0, 20, int(yt.sum()))] = 3
    assert np.mean(net(xt).argmax(1) == yt) >= 0.95
