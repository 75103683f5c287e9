import io
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from speechs2s.audio import (
    ASR_FEATURES,
    TTS_FEATURES,
    AudioInfo,
    FeatureConfig,
    LogMel,
    StreamedWav,
    audio_info,
    audio_writer,
    compute_stats,
    iter_audio_blocks,
    load_audio,
    mel_to_linear,
    save_audio,
)
from speechs2s.errors import AudioError, ConfigError

RATES = [8000, 16000, 22050, 44100, 48000]
FORMATS = [  # (suffix, subtype, max abs error after a round trip; None: lossy, compared spectrally)
    ("wav", "PCM_16", 1e-4),
    ("wav", "PCM_24", 1e-6),
    ("wav", "FLOAT", 0.0),
    ("flac", "PCM_16", 1e-4),
    ("flac", "PCM_24", 1e-6),
    ("ogg", "VORBIS", None),
    ("mp3", "MPEG_LAYER_III", None),
]


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """``(frames, channels)`` sines at 0.5 amplitude, channel c at ``freq * (c + 1)``."""
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)], axis=1).astype(np.float32)


def peak_hz(wav: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav.numpy()))
    return np.argmax(spectrum) * rate / len(wav)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("suffix,subtype,tolerance", FORMATS)
def test_round_trip_formats_and_rates(tmp_path, suffix, subtype, tolerance, rate):
    samples = tone(rate)[:, 0]
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, samples, rate, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.dim() == 1
    if tolerance is not None:
        assert len(wav) == len(samples)
        np.testing.assert_allclose(wav.numpy(), samples, atol=tolerance)
    else:  # lossy codecs: same length within one codec frame, same pitch, same loudness
        assert abs(len(wav) - len(samples)) < 2000
        assert abs(peak_hz(wav, rate) - 440) < 5
        assert wav.square().mean().sqrt().item() == pytest.approx(0.5 / np.sqrt(2), rel=0.15)
    info = audio_info(path)
    assert info.sample_rate == rate and info.channels == 1
    assert info.duration == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_averaged_to_mono(tmp_path, channels):
    samples = tone(16000, channels=channels)
    path = tmp_path / "multi.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path).numpy(), samples.mean(axis=1), atol=1e-6)
    assert audio_info(path) == AudioInfo(duration=0.5, sample_rate=16000, channels=channels, frames=8000)


@pytest.mark.parametrize("source_rate,target_rate", [(48000, 16000), (8000, 22050), (44100, 16000), (22050, 22050)])
def test_resampling_keeps_pitch_and_duration(tmp_path, source_rate, target_rate):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(source_rate, seconds=1.0), source_rate, subtype="PCM_24")
    wav = load_audio(path, sample_rate=target_rate)
    assert len(wav) == target_rate
    assert abs(peak_hz(wav, target_rate) - 440) <= 1


def test_blocks_and_segments_match_whole_file(tmp_path):
    path = tmp_path / "noise.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 3, 2)).astype(np.float32), 44100, subtype="PCM_24")
    whole = load_audio(path, 16000)
    blocks = list(iter_audio_blocks(path, block_seconds=0.7, sample_rate=16000))
    assert len(blocks) == 5
    torch.testing.assert_close(torch.cat(blocks), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(load_audio(path, 16000, start=1.0, end=2.0), whole[16000:32000], atol=1e-5, rtol=0)
    assert len(load_audio(path, start=2.5)) == 44100 // 2
    with pytest.raises(AudioError, match=r"noise.flac: no audio in segment 4-end s \(file is 3.00 s long\)"):
        load_audio(path, start=4.0)


def write_bytes(data: bytes):
    def make(path):
        path.write_bytes(data)
        return path

    return make


def valid_wav_bytes(tmp_path) -> bytes:
    sf.write(tmp_path / "valid.wav", tone(16000), 16000, subtype="PCM_16")
    return (tmp_path / "valid.wav").read_bytes()


def nan_file(path):
    samples = tone(16000)
    samples[100] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")
    return path


def inf_file(path):
    samples = tone(16000)
    samples[7] = np.inf
    sf.write(path, samples, 16000, subtype="DOUBLE")
    return path


def zero_length_file(path):
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    return path


def directory(path):
    path.mkdir()
    return path


BAD_FILES = {
    "missing": (lambda path: path, "no such file"),
    "directory": (directory, "is a directory"),
    "empty": (write_bytes(b""), "empty file"),
    "text": (write_bytes(b"this is a text file, not audio\n" * 20), "not a readable audio file"),
    "random bytes": (write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))), "not a readable audio file"),
    "zero length": (zero_length_file, "contains no audio samples"),
    "nan": (nan_file, "contains NaN/inf samples"),
    "inf": (inf_file, "contains NaN/inf samples"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, case):
    make, reason = BAD_FILES[case]
    path = make(tmp_path / "bad input.wav")
    with pytest.raises(AudioError) as error:
        load_audio(path, sample_rate=16000)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_truncated_files(tmp_path):
    data = valid_wav_bytes(tmp_path)
    header_cut = write_bytes(data[:20])(tmp_path / "cut header.wav")
    with pytest.raises(AudioError, match="cut header.wav: not a readable audio file"):
        load_audio(header_cut)
    with pytest.raises(AudioError, match="cut header.wav"):
        audio_info(header_cut)
    header_only = write_bytes(data[:44])(tmp_path / "header only.wav")
    with pytest.raises(AudioError, match="header only.wav: contains no audio samples"):
        load_audio(header_only)
    data_cut = write_bytes(data[:1044])(tmp_path / "cut data.wav")
    assert len(load_audio(data_cut)) == 500  # the samples that are there


@pytest.mark.parametrize("suffix,file_format,subtype", [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"),
                                                       ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")])
def test_save_audio_format_follows_the_suffix(tmp_path, suffix, file_format, subtype):
    wav = torch.from_numpy(tone(22050)[:, 0])
    path = tmp_path / "new" / "folders" / f"x.{suffix.upper()}"  # parents created, suffix case ignored
    save_audio(path, wav, 22050)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate) == (file_format, subtype, 22050)
    loaded = load_audio(path)
    if subtype == "PCM_16":
        torch.testing.assert_close(loaded, wav, atol=1e-4, rtol=0)
    else:  # lossy: same length within a codec frame, same pitch and loudness
        assert abs(len(loaded) - len(wav)) < 2000 and abs(peak_hz(loaded, 22050) - 440) < 5
        assert loaded.square().mean().sqrt().item() == pytest.approx(0.5 / np.sqrt(2), rel=0.15)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_save_audio_clips_and_refuses_what_it_cannot_write(tmp_path):
    wav = torch.from_numpy(tone(22050)[:, 0])
    save_audio(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.25], np.float32), 8000)
    np.testing.assert_allclose(load_audio(tmp_path / "loud.wav").numpy(), [32767 / 32768, -1.0, 0.25], atol=1e-4)
    with pytest.raises(AudioError, match=r"x\.xyz: cannot write audio as '\.xyz' \(use \.wav, \.flac, \.ogg, \.mp3\)"):
        save_audio(tmp_path / "x.xyz", wav, 22050)
    (tmp_path / "file").write_text("")
    with pytest.raises(AudioError, match=r"file/x\.wav: cannot write audio \(.+\)$"):  # parent is a file
        save_audio(tmp_path / "file" / "x.wav", wav, 22050)
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(AudioError, match=r"folder\.wav: cannot write audio \(is a directory\)"):
        save_audio(tmp_path / "folder.wav", wav, 22050)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.wav", "loud.wav"]


def test_interrupted_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "speech.flac"
    save_audio(path, tone(16000)[:, 0], 16000)
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with audio_writer(path, 16000) as out:
            out.write(np.zeros(8000, np.float32))
            raise KeyboardInterrupt  # Ctrl-C in the middle of a long synthesis
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["speech.flac"]
    with pytest.raises(KeyboardInterrupt), audio_writer(tmp_path / "new.wav", 16000) as out:
        out.write(np.zeros(8000, np.float32))
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["speech.flac"]


def test_save_audio_to_stdout_and_load_audio_from_bytes(capsysbinary):
    wav = tone(16000)[:, 0]
    save_audio("-", wav, 16000)
    data = capsysbinary.readouterr().out
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    loaded = load_audio(io.BytesIO(data), 22050)  # also resampled
    assert len(loaded) == 11025 and abs(peak_hz(loaded, 22050) - 440) < 5
    stream = io.BytesIO(data)
    stream.seek(100)  # read from the start wherever the stream stands
    assert audio_info(stream) == AudioInfo(0.5, 16000, 1, 8000)
    not_audio = io.BytesIO(b"hello, this is text")
    not_audio.name = "<stdin>"
    with pytest.raises(AudioError, match=r"^<stdin>: not a readable audio file"):
        load_audio(not_audio)
    with pytest.raises(AudioError, match=r"^<audio bytes>: empty \(0 bytes\)"):
        load_audio(io.BytesIO())


def test_streamed_wav_sends_each_write_at_once():
    class Pipe(io.BytesIO):
        closed_by_reader = False

        def write(self, data):
            if self.closed_by_reader:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(data)

    pipe = Pipe()
    out = StreamedWav(pipe, 16000)
    assert len(pipe.getvalue()) == 44  # the header, before any sample
    wav = tone(16000)[:, 0]
    out.write(wav[:4000])
    assert len(pipe.getvalue()) == 44 + 2 * 4000
    out.write(wav[4000:])
    loaded, rate = sf.read(io.BytesIO(pipe.getvalue()), dtype="float32")  # length "unknown": read to the end
    assert rate == 16000 and out.frames == len(loaded) == len(wav) and np.abs(loaded - wav).max() < 1e-4
    pipe.closed_by_reader = True
    with pytest.raises(AudioError, match="^<stdout>: the program reading the audio stopped reading$"):
        out.write(wav)


def test_feature_config_round_trip():
    assert FeatureConfig.from_dict(TTS_FEATURES.to_dict()) == TTS_FEATURES
    assert ASR_FEATURES.to_dict() == {"sample_rate": 16000, "n_fft": 400, "win_length": 400, "hop_length": 160, "n_mels": 80, "f_min": 0.0, "f_max": None}
    with pytest.raises(ConfigError, match="features.hop_size"):
        FeatureConfig.from_dict({"hop_size": 10})


@pytest.mark.parametrize("config", [ASR_FEATURES, TTS_FEATURES], ids=["asr", "tts"])
def test_log_mel_matches_librosa(corpora, config):
    wav = load_audio(corpora / "fsdd" / "recordings" / "3_george_7.wav", config.sample_rate)
    features = LogMel(config)(wav)
    assert features.shape == (len(wav) // config.hop_length + 1, config.n_mels)
    reference = librosa.feature.melspectrogram(
        y=wav.numpy(), sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max,
        power=2.0, center=True, pad_mode="reflect",
    )
    reference = np.log(np.maximum(reference, 1e-5)).T
    assert np.abs(features.numpy() - reference).max() < 1e-3
    batch = LogMel(config)(torch.stack([wav, wav.flip(0)]))
    assert batch.shape == (2, *features.shape)
    torch.testing.assert_close(batch[0], features, atol=1e-4, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # features stay float32 under mixed precision
        mixed = LogMel(config)(wav.bfloat16())
    assert mixed.dtype == torch.float32 and (mixed - features).abs().mean() < 0.05


def test_mel_to_linear_and_griffin_lim_reconstruction(corpora):
    config = TTS_FEATURES
    wav = load_audio(corpora / "fsdd" / "recordings" / "5_jackson_12.wav", config.sample_rate)
    log_mel = LogMel(config)(wav)
    magnitude = mel_to_linear(log_mel, config)
    assert magnitude.shape == (config.n_fft // 2 + 1, log_mel.shape[0]) and (magnitude >= 0).all()
    assert mel_to_linear(torch.stack([log_mel, log_mel]), config).shape == (2, *magnitude.shape)
    # same answer as torchaudio's (least-squares) InverseMelScale
    inverse = torchaudio.transforms.InverseMelScale(config.n_fft // 2 + 1, config.n_mels, config.sample_rate, config.f_min, config.f_max, norm="slaney", mel_scale="slaney")
    reference = inverse(log_mel.exp().T).clamp(min=0).sqrt()
    assert (magnitude - reference).norm() < 1e-2 * reference.norm()

    def mel_error(magnitudes_to_wav):
        rebuilt = magnitudes_to_wav(magnitude)[: len(wav)]
        return (LogMel(config)(rebuilt)[: log_mel.shape[0]] - log_mel).abs().mean().item()

    stft = dict(n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length)
    torch.manual_seed(0)
    griffin_lim = torchaudio.transforms.GriffinLim(**stft, n_iter=32, power=1.0)
    random_phase = lambda m: torch.istft(m * torch.exp(2j * torch.pi * torch.rand_like(m)), window=torch.hann_window(config.win_length), **stft)
    assert mel_error(griffin_lim) < 0.6
    assert mel_error(griffin_lim) < 0.7 * mel_error(random_phase)


def test_compute_stats(corpora, tmp_path):
    files = sorted((corpora / "fsdd" / "recordings").glob("*_theo_1*.wav"))[:6]
    entries = [{"audio": str(f)} for f in files] + [{"audio": str(tmp_path / "missing.wav")}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean, std = compute_stats(entries, ASR_FEATURES)
    assert any("skipped 1 unreadable" in str(w.message) for w in caught)
    assert mean.shape == std.shape == (80,) and (std > 0).all()
    features = torch.cat([LogMel(ASR_FEATURES)(load_audio(f, 16000)) for f in files])
    torch.testing.assert_close(mean, features.mean(0), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(std, features.std(0, unbiased=False), atol=1e-3, rtol=1e-3)
    subset_mean, _ = compute_stats(entries[:6], ASR_FEATURES, max_files=2)
    assert not torch.allclose(subset_mean, mean)
    with pytest.raises(AudioError, match="none of the 1 audio files"), pytest.warns(UserWarning):
        compute_stats(entries[-1:], ASR_FEATURES)
    segment = {"audio": str(files[0]), "start": 0.1, "end": 0.3}  # a segment entry: only its part counts
    segment_mean, _ = compute_stats([segment], ASR_FEATURES)
    torch.testing.assert_close(segment_mean, LogMel(ASR_FEATURES)(load_audio(files[0], 16000, 0.1, 0.3)).mean(0))
