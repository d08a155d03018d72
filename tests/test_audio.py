"""Sound: WAV reading (good and bad files), log-mel spectrograms and MFCCs against
librosa, the FSDD loader on recordings the tests make, and on the shared copy when present."""

from __future__ import annotations

import io
import struct
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest

from clearconv.data import DataError, DataMissingError
from clearconv.data.audio import (
    AudioFeatures,
    fix_length,
    log_mel_spectrogram,
    mel_filters,
    mfcc,
    read_wav,
)
from clearconv.data.fsdd import load_fsdd

SHARED = Path(__file__).parents[2] / "shared/datasets"


def wav_bytes(samples, rate=8000, width=2, channels=1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples).tobytes())
    return buf.getvalue()


def tone(freq, seconds=0.5, rate=8000, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


# -- reading ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "width, kind, scale, offset",
    [(1, np.uint8, 128, 128), (2, "<i2", 32768, 0), (4, "<i4", 2**31, 0)],
)
def test_pcm_widths_read_to_the_same_float_samples(width, kind, scale, offset):
    x = tone(440)
    raw = np.round(x * (scale - 1) + offset).astype(kind)
    samples, rate = read_wav(wav_bytes(raw, width=width))
    assert rate == 8000 and samples.dtype == np.float32 and samples.shape == x.shape
    np.testing.assert_allclose(samples, x, atol=1.5 / scale * (1 if width > 1 else 2))


def test_a_file_on_disk_reads_as_its_bytes(tmp_path):
    data = wav_bytes((tone(300) * 32767).astype("<i2"))
    (tmp_path / "a.wav").write_bytes(data)
    a, _ = read_wav(tmp_path / "a.wav")
    b, _ = read_wav(data)
    np.testing.assert_array_equal(a, b)


def _header_only(frames: int, rate=8000) -> bytes:
    """A RIFF header that promises ``frames`` 16-bit samples and holds none."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + 2 * frames) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 2 * frames))  # fmt: skip


@pytest.mark.parametrize(
    "data, message",
    [
        (b"not a wave file at all" * 4, "not a PCM WAV file"),
        (wav_bytes(np.zeros(10, "<i2").tobytes() * 3, width=3), "24-bit samples"),
        (wav_bytes(np.zeros((100, 2), "<i2"), channels=2), "2 channels; expected a mono"),
        (wav_bytes(np.zeros(0, "<i2")), "no samples"),
        (_header_only(8000 * 600), "600.0 s long; at most 60 s"),
        (wav_bytes(np.zeros(4000, "<i2"))[:-2000], "truncated: the header says 4000 samples"),
    ],
    ids=["not-riff", "24-bit", "stereo", "empty", "ten-minutes", "truncated"],
)
def test_bad_audio_gets_one_clear_line(data, message):
    with pytest.raises(DataError, match=message) as info:
        read_wav(data, name="clip.wav")
    assert str(info.value).startswith("clip.wav: ") and "\n" not in str(info.value)


def test_fix_length_pads_short_and_keeps_the_middle_of_long():
    assert fix_length(np.ones(3, np.float32), 5).tolist() == [1, 1, 1, 0, 0]
    assert fix_length(np.arange(7.0), 3).tolist() == [2, 3, 4]


# -- features ----------------------------------------------------------------------------
def test_log_mel_and_mfcc_match_librosa():
    librosa = pytest.importorskip("librosa")
    x = (np.random.default_rng(0).standard_normal(8000) * 0.1 + tone(700, 1.0)).astype(np.float32)
    ours = log_mel_spectrogram(x, 8000, n_fft=256, hop_length=80, n_mels=40)
    power = librosa.feature.melspectrogram(y=x, sr=8000, n_fft=256, hop_length=80, n_mels=40,
                                           center=False, power=2.0)  # fmt: skip
    ref = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    filters = librosa.filters.mel(sr=8000, n_fft=256, n_mels=40)
    np.testing.assert_allclose(mel_filters(8000, 256, 40), filters, atol=1e-7)
    ref_mfcc = librosa.feature.mfcc(S=ref, n_mfcc=13)
    np.testing.assert_allclose(mfcc(x, 8000, 13), ref_mfcc, atol=1e-2)


def test_a_tone_lights_the_band_that_holds_its_pitch():
    for freq in (300, 1000, 3000):
        s = log_mel_spectrogram(tone(freq, 1.0).astype(np.float32), 8000)
        filters = mel_filters(8000, 256, 40)
        bin_ = round(freq / 8000 * 256)
        assert s.mean(axis=1).argmax() == filters[:, bin_].argmax()


def test_features_shapes_and_round_trip():
    f = AudioFeatures()
    x = np.zeros((3, 5000), np.float32)
    assert f(x).shape == (3, 1, 40, 97)
    assert AudioFeatures(kind="waveform")(x).shape == (3, 1, 8000)
    assert AudioFeatures(kind="mfcc")(x).shape == (3, 1, 13, 97)
    assert AudioFeatures.from_dict(AudioFeatures(kind="mfcc").to_dict()) == AudioFeatures("mfcc")
    with pytest.raises(ValueError, match="kind must be"):
        AudioFeatures(kind="spectrum")


def test_features_of_a_file_resample_other_rates():
    pytest.importorskip("scipy")
    f = AudioFeatures(kind="waveform")
    at16k = f.from_file(wav_bytes((tone(440, 1.0, 16000) * 32767).astype("<i2"), rate=16000))
    at8k = f.from_file(wav_bytes((tone(440, 1.0, 8000) * 32767).astype("<i2"), rate=8000))
    assert at16k.shape == at8k.shape == (1, 1, 8000)
    np.testing.assert_allclose(at16k[0, 0, 100:-100], at8k[0, 0, 100:-100], atol=0.02)


# -- FSDD ------------------------------------------------------------------------------
def _fake_fsdd(root: Path, as_tar: bool) -> None:
    """Digits as tones (digit d at 300 + 200 d Hz), two speakers, indices 0-7."""
    folder = root / "fsdd"
    folder.mkdir(parents=True)
    files = {}
    for d in range(10):
        for speaker in ("ann", "bob"):
            for i in range(8):
                x = tone(300 + 200 * d, 0.3 + 0.05 * i) * 32767
                files[f"{d}_{speaker}_{i}.wav"] = wav_bytes(x.astype("<i2"))
    if as_tar:
        with tarfile.open(folder / "recordings.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"recordings/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (folder / "recordings").mkdir()
        for name, data in files.items():
            (folder / "recordings" / name).write_bytes(data)


@pytest.mark.parametrize("as_tar", [True, False], ids=["tarball", "folder"])
def test_fsdd_official_split_from_tarball_or_folder(tmp_path, as_tar):
    _fake_fsdd(tmp_path, as_tar)
    train, test = load_fsdd(tmp_path, "train"), load_fsdd(tmp_path, "test")
    assert len(test) == 10 * 2 * 5 and len(train) == 10 * 2 * 3
    assert train.images.shape[1:] == (1, 40, 97) and train.images.dtype == np.float32
    assert sorted(set(test.labels.tolist())) == list(range(10))
    assert train.class_names == [str(d) for d in range(10)]


def test_fsdd_missing_says_what_to_put_where(tmp_path):
    with pytest.raises(DataMissingError, match=r"recordings.tar.gz .* into .*fsdd/"):
        load_fsdd(tmp_path)


def test_fsdd_names_a_bad_recording(tmp_path):
    _fake_fsdd(tmp_path, as_tar=False)
    (tmp_path / "fsdd" / "recordings" / "3_ann_9.wav").write_bytes(b"RIFF....junk")
    with pytest.raises(DataError, match=r"3_ann_9\.wav: not a PCM WAV file"):
        load_fsdd(tmp_path, "train")


@pytest.mark.skipif(not (SHARED / "fsdd").is_dir(), reason="no ../shared/datasets/fsdd here")
def test_the_shared_fsdd_copy_has_the_official_split():
    test = load_fsdd(SHARED, "test", AudioFeatures(kind="waveform"))
    assert test.images.shape == (300, 1, 8000)
    assert np.bincount(test.labels).tolist() == [30] * 10
