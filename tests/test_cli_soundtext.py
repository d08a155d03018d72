"""Sound and text through the commands: train on recordings and sentences the tests
make, the features and vocabulary recorded in the model file, predict on new
recordings and sentences, evaluate, and the shared FSDD copy when present."""

from __future__ import annotations

import csv
import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

import clearconv
from clearconv.cli import main
from clearconv.cli import soundtext as st
from clearconv.data.text import Vocab

SHARED = Path(__file__).parents[2] / "shared/datasets"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def tones(folder: Path, n: int = 12, seed: int = 0) -> Path:
    """``folder/low`` (300 Hz) and ``folder/high`` (1.5 kHz): half-second tones of
    random loudness and a little noise, plus one file that is not a WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(4000) / 8000
    for name, f0 in (("low", 300.0), ("high", 1500.0)):
        (folder / name).mkdir(parents=True)
        for i in range(n):
            f = f0 * (1 + 0.05 * rng.standard_normal())
            x = rng.uniform(0.1, 0.8) * np.sin(2 * np.pi * f * t)
            write_wav(folder / name / f"{i}.wav", x + 0.01 * rng.standard_normal(len(t)))
    (folder / "low" / "broken.wav").write_bytes(b"RIFF? not really")
    return folder


GOOD = ["a great film", "wonderful and moving", "i loved it", "great acting , great story"]
BAD = ["a dull film", "boring and slow", "i hated it", "bad acting , bad story"]


def sentences(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def text_folder(folder: Path) -> Path:
    folder.mkdir()
    rows = [(s, "fresh") for s in GOOD] + [(s, "rotten") for s in BAD]
    sentences(folder / "train.csv", rows * 6)
    sentences(folder / "test.csv", [("great story", "fresh"), ("boring film", "rotten")])
    return folder


# -- sound ---------------------------------------------------------------------------
def test_a_wav_folder_trains_skips_the_broken_file_and_predicts_new_tones(tmp_path, capsys):
    data = tones(tmp_path / "tones")
    out = tmp_path / "m.npz"
    code, _, err = run(capsys, "train", "--model", "audio2d", "--data", data, "--out", out, "-q")
    assert code == 0
    assert "skipped 1 unreadable file" in err and "broken.wav" in err
    model = clearconv.load(out)
    assert model.meta["features"]["kind"] == "logmel" and model.input_shape == (1, 40, 97)
    # new recordings, made with another seed, at another loudness
    new = tones(tmp_path / "new", n=3, seed=7)
    (new / "low" / "broken.wav").unlink()
    code, text, _ = run(capsys, "predict", out, new, "--json")
    assert code == 0
    results = json.loads(text)["results"]
    assert len(results) == 6
    assert all(Path(r["file"]).parent.name == r["top"][0]["class"] for r in results)
    code, text, _ = run(capsys, "evaluate", out, "--json")
    rep = json.loads(text)
    assert code == 0 and rep["n"] == 5 and rep["accuracy"] == 1.0  # the held-out 20%


def test_audio1d_reads_the_waveform_as_its_file_records(tmp_path, capsys):
    data = tones(tmp_path / "tones", n=6)
    out = tmp_path / "m.npz"
    code, _, _ = run(
        capsys, "train", "--model", "audio1d", "--data", data, "--out", out, "--epochs", "1", "-q"
    )
    assert code == 0
    model = clearconv.load(out)
    assert model.meta["features"]["kind"] == "waveform" and model.input_shape == (1, 8000)
    feats = st.model_features(model)
    x = feats.from_file(data / "high" / "0.wav")
    assert x.shape == (1, 1, 8000)
    # standardized: the loudness of the recording is gone
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_predict_names_a_bad_recording_in_one_line(tmp_path, capsys):
    data = tones(tmp_path / "tones", n=4)
    out = tmp_path / "m.npz"
    assert run(capsys, "train", "--model", "audio2d", "--data", data, "--out", out,
               "--epochs", "1", "-q")[0] == 0  # fmt: skip
    code, _, err = run(capsys, "predict", out, data / "low" / "broken.wav")
    assert code != 0 and "broken.wav" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "predict", out, "--text", "hello")
    assert code != 0 and "text model" in err


# -- text ----------------------------------------------------------------------------
def test_sentences_train_a_textcnn_whose_file_keeps_the_vocabulary(tmp_path, capsys):
    data = text_folder(tmp_path / "reviews")
    out = tmp_path / "t.npz"
    code, text, _ = run(capsys, "train", "--model", "textcnn", "--data", data, "--out", out,
                        "--min-count", "1")  # fmt: skip
    assert code == 0 and "test accuracy 100.00% on 2 sentences" in text
    model = clearconv.load(out)
    vocab = Vocab.from_dict(model.meta["vocab"])
    assert {"great", "boring", "<unk>"} <= set(vocab.tokens) and vocab.max_len == 56
    assert model.net[0].num_embeddings == len(vocab)
    code, text, _ = run(capsys, "predict", out, "--text", "a great story", "--text",
                        "slow and dull", "--json")  # fmt: skip
    got = [(r["text"], r["top"][0]["class"]) for r in json.loads(text)["results"]]
    assert got == [("a great story", "fresh"), ("slow and dull", "rotten")]
    code, text, _ = run(capsys, "evaluate", out, "--json")
    rep = json.loads(text)
    assert code == 0 and rep["data"]["dataset"] == "text" and rep["n"] == 2
    assert rep["confusion"] == [[1, 0], [0, 1]]


def test_one_csv_needs_val_split_and_evaluate_tests_on_the_same_held_out_rows(tmp_path, capsys):
    rows = [(s, "fresh") for s in GOOD] + [(s, "rotten") for s in BAD]
    data = sentences(tmp_path / "all.csv", rows * 5)
    out = tmp_path / "t.npz"
    code, _, err = run(capsys, "train", "--model", "textcnn", "--data", data, "--out", out)
    assert code != 0 and "--val-split" in err
    code, text, _ = run(capsys, "train", "--model", "textcnn", "--data", data, "--out", out,
                        "--val-split", "0.2", "--epochs", "1", "-q")  # fmt: skip
    assert code == 0 and "on 8 sentences" in text
    meta = clearconv.load(out).meta
    assert meta["train_images"] == 32 and "--val-split 0.2" in meta["command"]
    code, text, _ = run(capsys, "evaluate", out, "--json")
    assert code == 0 and json.loads(text)["n"] == 8


def test_pretrained_vectors_fill_the_rows_of_their_words(tmp_path):
    vocab = Vocab(["<pad>", "<unk>", "good", "bad"])
    path = tmp_path / "vec.txt"
    path.write_text("3 4\ngood 1 2 3 4\nother 9 9 9 9\nbad -1 -2 -3 -4\n")
    w = np.zeros((4, 4), np.float32)
    assert st.embedding_dim(str(path)) == 4
    assert st.read_embeddings(path, vocab, w) == 2
    np.testing.assert_array_equal(w[2:], [[1, 2, 3, 4], [-1, -2, -3, -4]])
    assert not w[:2].any()
    path.write_text("good 1 2\n")
    with pytest.raises(clearconv.cli.CLIError, match="line 1 has 2 numbers"):
        st.read_embeddings(path, vocab, w)


def test_train_with_embeddings_sizes_the_vectors_from_the_file(tmp_path, capsys):
    data = text_folder(tmp_path / "reviews")
    vec = tmp_path / "vec.txt"
    vec.write_text("great 0.5 0.5 0.5\nboring -0.5 -0.5 -0.5\n")
    out = tmp_path / "t.npz"
    code, text, _ = run(capsys, "train", "--model", "textcnn", "--data", data, "--out", out,
                        "--embeddings", vec, "--epochs", "1", "--min-count", "1")  # fmt: skip
    assert code == 0 and "pretrained vectors for 2 of" in text
    assert clearconv.load(out).net[0].embedding_dim == 3


# -- the shared FSDD copy ----------------------------------------------------------------
@pytest.mark.skipif(
    not (SHARED / "fsdd").is_dir(), reason="no shared FSDD copy at ../shared/datasets/fsdd"
)
def test_fsdd_trains_and_evaluates_on_the_official_test_split(tmp_path, capsys):
    out = tmp_path / "m.npz"
    code, _, _ = run(capsys, "train", "--model", "audio1d", "--dataset", "fsdd", "--data-dir",
                     SHARED, "--out", out, "--epochs", "1", "--limit", "300", "-q")  # fmt: skip
    assert code == 0
    meta = clearconv.load(out).meta
    assert meta["dataset"] == "fsdd" and meta["test_images"] == 300
    code, text, _ = run(capsys, "evaluate", out, "--json")
    rep = json.loads(text)
    assert code == 0 and rep["n"] == 300 and rep["data"]["dataset"] == "fsdd"
    assert np.asarray(rep["confusion"]).shape == (10, 10)
    assert np.asarray(rep["confusion"]).sum(axis=1).tolist() == [30] * 10


def test_fsdd_missing_says_what_to_put_where(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", "audio2d", "--dataset", "fsdd", "--data-dir",
                       tmp_path, "--out", tmp_path / "m.npz")  # fmt: skip
    assert code != 0 and "recordings.tar.gz" in err and str(tmp_path / "fsdd") in err


# -- inspect -------------------------------------------------------------------------
def test_inspect_a_recording_shows_waveform_spectrogram_and_maps_along_time(tmp_path, capsys):
    data = tones(tmp_path / "tones", n=4)
    out = tmp_path / "m.npz"
    assert run(capsys, "train", "--model", "audio2d", "--data", data, "--out", out,
               "--epochs", "1", "-q")[0] == 0  # fmt: skip
    page = tmp_path / "r.html"
    code, text, _ = run(capsys, "inspect", out, "--image", data / "low" / "0.wav", "--out", page)
    assert code == 0 and "0.wav" in text
    html = page.read_text()
    assert "waveform" in html and "log-mel input" in html and "Feature maps along time" in html
    # three conv blocks and their pools each show a channels x time map
    assert len(re.findall(r"<figcaption>\d+: Conv2d \(", html)) == 3


def test_envelope_covers_each_columns_range():
    from clearconv.viz.soundtext import envelope

    x = np.concatenate([np.zeros(100), np.linspace(-1, 1, 100)])
    e = envelope(x, width=2, height=21)
    assert e[:, 1].all()  # the ramp spans the whole height
    assert e[:, 0].sum() <= 3 and e[10, 0] == 1  # silence: the middle row only


def test_inspect_a_sentence_finds_the_word_that_decided(tmp_path, capsys):
    from clearconv.viz.soundtext import filter_windows, word_saliency

    data = text_folder(tmp_path / "reviews")
    out = tmp_path / "t.npz"
    assert run(capsys, "train", "--model", "textcnn", "--data", data, "--out", out,
               "--min-count", "1", "-q")[0] == 0  # fmt: skip
    model = clearconv.load(out)
    words = ["the", "story", "was", "great"]
    tokens = st.text_inputs(model, [" ".join(words)])
    fresh = model.class_names.index("fresh")
    sal = word_saliency(model, tokens, fresh)
    assert int(np.argmax(sal[:4])) == 3  # "great" pushed towards fresh the most
    # the saliency is the gradient of the score: a finite difference along the
    # word vector of "great" agrees with it
    emb = model.net[0]
    i = tokens[0, 3]
    keep = emb.weight.data[i].copy()
    logit = lambda: float(model.net(tokens, training=False)[0, fresh])  # noqa: E731
    eps = 1e-2
    emb.weight.data[i] = keep * (1 + eps)
    up = logit()
    emb.weight.data[i] = keep * (1 - eps)
    down = logit()
    emb.weight.data[i] = keep
    assert (up - down) / (2 * eps) == pytest.approx(float(sal[3]), rel=0.05, abs=1e-3)
    windows = filter_windows(model, tokens, fresh, top=3)
    assert len(windows) == 3 and windows[0]["contribution"] >= windows[-1]["contribution"]
    assert all(w["width"] in (3, 4, 5) and 0 <= w["start"] < 56 for w in windows)
    page = tmp_path / "r.html"
    code, text, _ = run(capsys, "inspect", out, "--text", "the story was great", "--out", page)
    assert code == 0 and "fresh" in text
    html = page.read_text()
    assert "Saliency per word" in html and ">great</span>" in html and "strongest filters" in html


# -- the page ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["audio2d", "audio1d"])
def test_the_page_takes_a_wav_upload_for_a_sound_model(tmp_path, name):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    pytest.importorskip("multipart")
    import io
    import warnings

    from clearconv import Model, zoo
    from clearconv.data.audio import AudioFeatures
    from clearconv.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer Starlette suggests the httpx2 fork
        from starlette.testclient import TestClient

    feats = AudioFeatures(kind="waveform" if name == "audio1d" else "logmel")
    net, shape = zoo.build(name, st.features_shape(feats), 2, rng=np.random.default_rng(0))
    model = Model(net, shape, ["low", "high"], meta={"features": feats.to_dict()})
    data = tones(tmp_path / "t", n=1)
    wav = (data / "high" / "0.wav").read_bytes()
    with TestClient(create_app(model), raise_server_exceptions=False) as c:
        r = c.post("/api/featuremaps", content=wav, headers={"Content-Type": "audio/wav"})
        assert r.status_code == 200, r.text
        body = r.json()
        expected = model.predict_proba(feats.from_file(wav))[0]
        np.testing.assert_allclose(body["probabilities"], expected, atol=1e-5)
        assert body["input"].startswith("data:image/png") and len(body["layers"]) > 3
        files = {"file": ("x.wav", io.BytesIO(wav), "audio/wav")}
        assert c.post("/api/predict", files=files).json()["probabilities"] == body["probabilities"]
        bad = c.post("/api/predict", content=b"RIFFxxxx", headers={"Content-Type": "audio/wav"})
        assert bad.status_code == 400 and "the upload" in bad.json()["error"]
        png = c.post("/api/predict", content=b"\x89PNG", headers={"Content-Type": "image/png"})
        assert png.status_code == 415 and "WAV" in png.json()["error"]


def test_evaluate_plots_for_a_text_model_leave_out_the_picture_of_mistakes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    data = text_folder(tmp_path / "reviews")
    out = tmp_path / "t.npz"
    assert run(capsys, "train", "--model", "textcnn", "--data", data, "--out", out,
               "--epochs", "1", "-q")[0] == 0  # fmt: skip
    code, _, err = run(capsys, "evaluate", out, "--plots", tmp_path / "p")
    assert code == 0, err
    assert (tmp_path / "p" / "confusion.png").is_file()
    assert not (tmp_path / "p" / "mistakes.png").exists()  # token ids are no picture


def test_predict_reads_a_recording_exactly_as_training_read_it(tmp_path):
    from clearconv.data.audio import AudioFeatures
    from clearconv.data.fsdd import load_fsdd

    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for digit in range(3):  # test-split names (index 0), one shorter and one longer than 1 s
        n = (6000, 8000, 9500)[digit]
        x = 0.3 * np.sin(2 * np.pi * 200 * (digit + 1) * np.arange(n) / 8000)
        write_wav(rec / f"{digit}_tester_0.wav", x + 0.01 * rng.standard_normal(n))
    for kind in ("logmel", "mfcc", "waveform"):
        feats = AudioFeatures(kind=kind)
        ds = load_fsdd(tmp_path, "test", feats)
        files = sorted(rec.glob("*.wav"))
        got, kept = st.read_recordings(files, feats, [])
        assert kept.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(got, ds.images)
