import math

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from speechs2s.audio import load_audio
from speechs2s.data import (
    ASRDataset,
    BucketBatchSampler,
    ChannelAugment,
    SpecAugment,
    TTSDataset,
    VocoderDataset,
    add_noise,
    collate_asr,
    collate_tts,
    collate_vocoder,
    reverberate,
    speed_perturb,
)
from speechs2s.data.corpora import import_fsdd
from speechs2s.errors import ManifestError
from speechs2s.text.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def fsdd_entries(corpora):
    return import_fsdd(corpora / "fsdd", speakers=["theo"], split="test")[:12]


def test_asr_dataset_on_real_audio(fsdd_entries):
    tokenizer = CharTokenizer()
    dataset = ASRDataset(fsdd_entries, tokenizer)
    assert len(dataset) == 12
    item = dataset[0]
    samples = round(fsdd_entries[0]["duration"] * 16000)  # 8 kHz files read at 16 kHz
    assert item["id"] == fsdd_entries[0]["id"]
    assert item["features"].shape == (samples // 160 + 1, 80)
    assert torch.isfinite(item["features"]).all()
    assert tokenizer.decode(item["tokens"].tolist()) == fsdd_entries[0]["text"]
    assert dataset.lengths[0] == item["features"].shape[0]
    # a DataLoader with the bucket sampler and collate gives padded batches within the budget
    loader = DataLoader(dataset, batch_sampler=BucketBatchSampler(dataset.lengths, max_frames=300), collate_fn=collate_asr)
    seen = 0
    for batch in loader:
        B, T, M = batch["features"].shape
        assert B * T <= 300 and M == 80 and batch["skipped"] == 0
        assert batch["feature_lengths"].max() == T and batch["tokens"].shape == (B, batch["token_lengths"].max())
        seen += B
    assert seen == 12


def test_tts_dataset_and_segment_entries(fsdd_entries):
    entries = [dict(fsdd_entries[1]), dict(fsdd_entries[2], start=0.1, end=0.3, duration=0.2)]
    dataset = TTSDataset(entries, CharTokenizer("tts"))
    full, segment = dataset[0], dataset[1]
    frames = round(entries[0]["duration"] * 22050) // 256 + 1
    assert full["mel"].shape == (frames, 80) and set(full) == {"id", "tokens", "mel"}
    assert segment["mel"].shape == (round(0.2 * 22050) // 256 + 1, 80)
    assert dataset.lengths == [frames, segment["mel"].shape[0]]
    batch = collate_tts([full, segment])
    assert batch["mels"].shape == (2, frames, 80)
    assert batch["mel_lengths"].tolist() == [frames, segment["mel"].shape[0]]
    assert (batch["mels"][1, segment["mel"].shape[0] :] == 0).all()


def test_feature_cache_reuses_features_of_unperturbed_items(fsdd_entries, tmp_path):
    entries = [dict(fsdd_entries[3]), dict(fsdd_entries[4], start=0.05, end=0.2, duration=0.15)]
    cached = TTSDataset(entries, CharTokenizer("tts"), cache_dir=tmp_path / "cache")
    first = [cached[i]["mel"] for i in range(2)]
    files = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 2 and not list((tmp_path / "cache").rglob("*.part"))
    for file in files:  # the second read comes from the cache: mark the cached arrays to prove it
        np.save(file, np.load(file) + 1.0)
    for i in range(2):
        assert torch.equal(cached[i]["mel"], first[i] + 1.0)
        assert torch.equal(TTSDataset(entries, CharTokenizer("tts"))[i]["mel"], first[i])  # no cache: computed
    # speed perturbation changes the features every epoch: nothing is cached
    perturbed = ASRDataset(entries, CharTokenizer(), speed_perturb=[0.9, 1.1], cache_dir=tmp_path / "sp")
    perturbed[0]
    assert not (tmp_path / "sp").exists()


def test_entries_need_text(fsdd_entries):
    entries = [dict(fsdd_entries[0]), {k: v for k, v in fsdd_entries[1].items() if k != "text"}]
    with pytest.raises(ManifestError, match="1 entries have no 'text', first: '0_theo_1'"):
        ASRDataset(entries, CharTokenizer())


def test_unreadable_item_is_dropped_and_counted(fsdd_entries, tmp_path, caplog):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....garbage")
    entries = [fsdd_entries[0], {"id": "broken", "audio": str(broken), "duration": 1.0, "text": "one"}]
    dataset = ASRDataset(entries, CharTokenizer())
    items = [dataset[0], dataset[1]]
    assert items[1] is None and "skipping 'broken'" in caplog.text
    batch = collate_asr(items)
    assert batch["ids"] == [fsdd_entries[0]["id"]] and batch["skipped"] == 1
    assert collate_asr([None, None]) is None


def test_tts_item_without_tokens_is_dropped(fsdd_entries, caplog):
    dataset = TTSDataset([dict(fsdd_entries[0], text="日本")], CharTokenizer("tts"))  # no Latin letters: no tokens
    assert dataset[0] is None and "nothing to speak" in caplog.text


def test_speed_perturb_reproducible_and_lengths_bound(fsdd_entries):
    def features(seed, epoch):
        dataset = ASRDataset(fsdd_entries, CharTokenizer(), speed_perturb=[0.9, 1.0, 1.1], seed=seed)
        dataset.set_epoch(epoch)
        return dataset, [dataset[i]["features"].shape[0] for i in range(len(dataset))]

    dataset, frames = features(0, 0)
    assert features(0, 0)[1] == frames
    assert features(0, 1)[1] != frames or features(1, 0)[1] != frames
    nominal = [round(e["duration"] * 16000) // 160 + 1 for e in fsdd_entries]
    assert len({f / n > 1.05 or f / n < 0.95 for f, n in zip(frames, nominal)}) == 2  # some items were perturbed
    assert all(f <= bound for f, bound in zip(frames, dataset.lengths))  # sampler budget still holds
    # the same choices in DataLoader worker processes, whatever worker serves an item
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_asr, multiprocessing_context="fork")
    assert [n for batch in loader for n in batch["feature_lengths"].tolist()] == frames


def test_transforms_apply(fsdd_entries):
    dataset = ASRDataset(
        fsdd_entries[:1], CharTokenizer(), transform=lambda f, generator: f * 0, target_transform=lambda t: t[:2]
    )
    item = dataset[0]
    assert (item["features"] == 0).all() and item["tokens"].shape == (2,)


def test_spec_augment_draws_from_the_items_generator(fsdd_entries):
    """Masks depend on (seed, epoch, index) only, and reading an item leaves the global RNGs alone
    (the trainer no longer reseeds them around every item)."""
    def masked(epoch, seed=0):
        dataset = ASRDataset(fsdd_entries[:4], CharTokenizer(), transform=SpecAugment(freq_width=20), seed=seed)
        dataset.set_epoch(epoch)
        return [dataset[i]["features"] for i in range(len(dataset))]

    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    first = masked(0)
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(7)  # another global state: the same items
    assert all(torch.equal(a, b) for a, b in zip(first, masked(0)))
    assert not all(torch.equal(a, b) for a, b in zip(first, masked(1)))


def test_vocoder_dataset(fsdd_entries):
    dataset = VocoderDataset(fsdd_entries[:4], segment_frames=16, seed=3)
    item = dataset[0]
    assert item["wav"].shape == (16 * 256,) and item["mel"].shape == (16, 80)
    # the mel slice is the mel of the waveform around it: recompute from the piece itself
    inside = slice(2, 15)  # frames whose 1024-sample window lies within the piece
    assert torch.allclose(dataset.log_mel(item["wav"])[inside], item["mel"][inside], atol=1e-3)
    again = VocoderDataset(fsdd_entries[:4], segment_frames=16, seed=3)[0]
    assert torch.equal(again["wav"], item["wav"])
    long_piece = VocoderDataset(fsdd_entries[:1], segment_frames=400)[0]  # longer than the clip: zero-padded
    assert long_piece["wav"].shape == (400 * 256,) and (long_piece["wav"][-256:] == 0).all()
    batch = collate_vocoder([dataset[i] for i in range(4)] + [None])
    assert batch["wavs"].shape == (4, 16 * 256) and batch["mels"].shape == (4, 16, 80) and batch["skipped"] == 1
    assert dataset.lengths == [16] * 4


def test_vocoder_piece_is_a_slice_of_the_whole_utterance(fsdd_entries, tmp_path):
    """Only the piece and its STFT context is decoded, yet wav and mel equal the whole utterance's."""
    wav = torch.cat([load_audio(entry["audio"], 22050) for entry in fsdd_entries])  # WAV at 22.05 kHz: exact seeks
    soundfile.write(tmp_path / "clip.wav", wav.numpy(), 22050, subtype="FLOAT")
    entries = [{"id": "clip", "audio": str(tmp_path / "clip.wav"), "duration": len(wav) / 22050}]
    dataset = VocoderDataset(entries, segment_frames=16)
    whole = dataset.log_mel(wav)
    for seed in range(6):
        dataset.seed = seed
        item = dataset[0]
        first = next(f for f in range(len(whole)) if torch.equal(wav[f * 256 : f * 256 + 16 * 256], item["wav"]))
        assert torch.allclose(whole[first : first + 16], item["mel"], atol=1e-4)


def test_collate_asr_padding():
    items = [
        {"id": "a", "features": torch.ones(5, 3), "tokens": torch.tensor([4, 5])},
        {"id": "b", "features": torch.ones(2, 3) * 2, "tokens": torch.tensor([6, 7, 8])},
    ]
    batch = collate_asr(items)
    assert batch["ids"] == ["a", "b"]
    assert batch["feature_lengths"].tolist() == [5, 2] and batch["feature_lengths"].dtype == torch.long
    assert batch["features"].shape == (2, 5, 3) and (batch["features"][1, 2:] == 0).all()
    assert batch["tokens"].tolist() == [[4, 5, 0], [6, 7, 8]] and batch["token_lengths"].tolist() == [2, 3]


def test_spec_augment_masks():
    features = torch.randn(200, 80) + 5
    augment = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width_ratio=0.1)
    masked = augment(features, generator=torch.Generator().manual_seed(0))
    changed = masked != features
    masked_bins = changed.all(dim=0)  # a frequency mask covers every frame
    masked_frames = changed.all(dim=1)
    assert 0 < masked_bins.sum() <= 20 and 0 < masked_frames.sum() <= 40
    assert torch.allclose(masked[changed], features.mean().expand(int(changed.sum())))
    assert (changed == (masked_bins[None, :] | masked_frames[:, None])).all()  # nothing else touched
    assert torch.equal(masked, augment(features, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(SpecAugment(0, 10, 0, 0.1)(features), features)


def test_speed_perturb_tempo_and_pitch():
    sample_rate = 16000
    t = torch.arange(sample_rate) / sample_rate
    wav = torch.sin(2 * math.pi * 440 * t)
    fast = speed_perturb(wav, sample_rate, 1.1)
    assert abs(fast.numel() - sample_rate / 1.1) <= 1
    spectrum = torch.fft.rfft(fast).abs()
    assert abs(spectrum.argmax().item() * sample_rate / fast.numel() - 484) < 3  # pitch up by 10%
    assert speed_perturb(wav, sample_rate, 1.0) is wav


def test_add_noise_snr():
    generator = torch.Generator().manual_seed(0)
    wav = torch.sin(torch.linspace(0, 2000, 16000))
    for noise in (None, torch.randn(3000, generator=generator)):
        noisy = add_noise(wav, 10.0, noise, generator=generator)
        snr = 10 * torch.log10(wav.square().mean() / (noisy - wav).square().mean())
        assert noisy.shape == wav.shape and abs(snr.item() - 10.0) < 0.01


def test_reverberate_keeps_alignment_and_level():
    wav = torch.zeros(1000)
    wav[100] = 1.0
    rir = torch.zeros(50)
    rir[5], rir[20] = 1.0, 0.5  # direct path after 5 samples, one echo
    wet = reverberate(wav, rir)
    assert wet.shape == wav.shape and wet.abs().argmax() == 100  # direct path realigned
    assert wet[115] > 0 and torch.isclose(wet.square().mean(), wav.square().mean())


def _frequency_ratio(before: torch.Tensor, after: torch.Tensor) -> float:
    """The factor by which ``after``'s long-term spectrum is ``before``'s stretched along frequency (harmonics
    and formants move together): the best of candidate ratios 0.8-1.25 by correlation of the log spectra."""
    window = torch.hann_window(1024)
    spectra = [torch.stft(x, 1024, 256, window=window, return_complex=True).abs().mean(-1).log() for x in (before, after)]
    bins = torch.arange(40, 400, dtype=torch.float32)  # 0.6-6 kHz at 16 kHz
    ratios = torch.linspace(0.8, 1.25, 91)
    scores = [torch.corrcoef(torch.stack([torch.from_numpy(np.interp(bins / r, np.arange(513), spectra[0].numpy())).float(),
                                          spectra[1][bins.long()]]))[0, 1] for r in ratios]
    return float(ratios[int(torch.stack(scores).argmax())])


def test_channel_augment_effects_on_real_speech(corpora):
    from speechs2s.audio import load_audio
    from speechs2s.data.augment import codec_round_trip, colored_noise, pitch_shift, room_impulse_response, telephone_band

    wav = load_audio(corpora / "joe-lj" / "dev" / "wavs" / "LJ002-0043.ogg", 16000)  # 5.0 s of one male voice
    up = pitch_shift(wav, 16000, 2.0)
    assert up.shape == wav.shape
    assert _frequency_ratio(wav, up) == pytest.approx(1.10, abs=0.02)  # 2 semitones = 1.12, rounded to 22/20
    assert pitch_shift(wav, 16000, 0.2) is wav  # rounds to ratio 1: untouched

    phone = telephone_band(wav, 16000)
    spectrum, phone_spectrum = (torch.fft.rfft(x).abs().square() for x in (wav, phone))
    above = slice(round(4000 / 8000 * spectrum.numel()), None)  # 4-8 kHz
    assert phone_spectrum[above].sum() < 1e-3 * spectrum[above].sum()

    for codec in ("opus", "mp3"):
        decoded = codec_round_trip(wav, 16000, codec, 0.9)
        assert decoded.shape == wav.shape and torch.corrcoef(torch.stack([wav, decoded]))[0, 1] > 0.9
        assert codec_round_trip(wav, 16000, codec, 1.0).shape == wav.shape  # the lowest bit rate (MP3: near it)

    rir = room_impulse_response(0.5, 16000, torch.Generator().manual_seed(0))
    energy = rir.square().cumsum(0)
    assert rir.numel() == 8000 and rir[0] == 1.0 and energy[4000] > 0.98 * energy[-1]  # decayed by the RT60
    pink = colored_noise(16000, 1.0, torch.Generator().manual_seed(0))
    power = torch.fft.rfft(pink).abs().square()
    assert power[100:200].mean() > 10 * power[4000:4100].mean()  # 1/f: far more power low than high


def test_channel_augment_is_seeded_keeps_length_and_zero_probabilities_do_nothing(corpora):
    from speechs2s.audio import load_audio

    wav = load_audio(corpora / "fsdd" / "recordings" / "3_theo_3.wav", 16000)
    everything = ChannelAugment(pitch_prob=1, reverb_prob=1, noise_prob=1, telephone_prob=1, codec_prob=1)
    first = everything(wav, 16000, torch.Generator().manual_seed(7))
    assert first.shape == wav.shape and torch.isfinite(first).all() and not torch.equal(first, wav)
    assert torch.equal(first, everything(wav, 16000, torch.Generator().manual_seed(7)))
    nothing = ChannelAugment(pitch_prob=0, reverb_prob=0, noise_prob=0, telephone_prob=0, codec_prob=0)
    assert torch.equal(nothing(wav, 16000, torch.Generator().manual_seed(7)), wav)
    with pytest.raises(ValueError, match="noise_prob"):
        ChannelAugment(noise_prob=1.5)


def test_a_failing_channel_augment_is_reported_with_its_entry_across_a_worker(fsdd_entries):
    import soundfile

    def broken_codec(wav, sample_rate, generator):
        raise soundfile.LibsndfileError(1, prefix="encoding failed: ")  # rebuilt from its message, it would not print

    dataset = ASRDataset(fsdd_entries[:1], CharTokenizer(), channel_augment=broken_codec)
    loader = torch.utils.data.DataLoader(dataset, num_workers=1, collate_fn=lambda items: items)
    entry = fsdd_entries[0]["id"]
    with pytest.raises(RuntimeError, match=rf"channel augmentation failed on '{entry}': LibsndfileError: encoding failed: "):
        next(iter(loader))


def test_asr_dataset_channel_augment_changes_per_epoch_and_skips_the_cache(fsdd_entries, tmp_path):
    augment = ChannelAugment(noise_prob=1.0, snr_db=[5.0, 10.0])
    dataset = ASRDataset(fsdd_entries[:2], CharTokenizer(), seed=0, cache_dir=tmp_path, channel_augment=augment)
    assert dataset.cache_dir is None
    first = dataset[0]["features"]
    assert torch.equal(first, dataset[0]["features"])  # same epoch, same item: same draw
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0]["features"])
    plain = ASRDataset(fsdd_entries[:2], CharTokenizer())[0]["features"]
    assert not torch.equal(first, plain)
