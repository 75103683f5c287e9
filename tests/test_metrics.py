import pytest
import torch

from speechs2s.audio import TTS_FEATURES, LogMel, load_audio
from speechs2s.metrics import cer, diagonality, error_counts, focus_rate, mel_cepstral_distortion, wer


def test_wer_hand_computed():
    # "oh" inserted, cat -> bat substituted, the second "the" deleted: 3 errors / 6 words
    ref, hyp = "The cat sat on the mat.", "oh the bat sat on mat"
    assert error_counts(ref, hyp) == {"sub": 1, "del": 1, "ins": 1, "ref_words": 6}
    assert wer([ref], [hyp]) == pytest.approx(3 / 6)


def test_wer_is_corpus_level_and_normalised():
    refs = ["Dr. Smith paid $5.", "one two three four five six seven eight nine ten", "hello"]
    hyps = ["doctor smith paid five dollars", "one two three four five six seven eight nine", ""]
    # 0 errors / 5 words, 1 deletion / 10 words, 1 deletion / 1 word -> 2 / 16 (not the mean of 0, 0.1, 1)
    assert wer(refs, hyps) == pytest.approx(2 / 16)
    assert error_counts("", "an extra word") == {"sub": 0, "del": 0, "ins": 3, "ref_words": 0}
    assert wer(["a b", ""], ["a b", "noise"]) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="no words"):
        wer([""], ["x"])
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])
    with pytest.raises(TypeError):
        wer("a b", "a b")


def test_cer_hand_computed():
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    assert cer(["Hello World!"], ["hello word"]) == pytest.approx(1 / 11)  # "hello world": one deletion
    assert cer(["ab", "cd"], ["ab", ""]) == pytest.approx(2 / 4)


def test_focus_rate():
    assert focus_rate(torch.eye(5)) == pytest.approx(1.0)
    assert focus_rate(torch.full((6, 4), 0.25)) == pytest.approx(0.25)
    # padded batch: padding rows/columns must not count
    batch = torch.zeros(2, 6, 5)
    batch[0] = torch.eye(6, 5)
    batch[0, 5, 4] = 1.0
    batch[1, :3, :2] = 0.5
    assert focus_rate(batch, dec_lengths=torch.tensor([6, 3]), enc_lengths=torch.tensor([5, 2])) == pytest.approx((1.0 + 0.5) / 2)


def test_diagonality():
    assert diagonality(torch.eye(8)) == pytest.approx(1.0)
    stretched = torch.zeros(20, 10)  # decoder twice as long as the encoder: still diagonal
    stretched[torch.arange(20), torch.arange(20) // 2] = 1.0
    assert diagonality(stretched) == pytest.approx(1.0)
    assert diagonality(torch.full((200, 100), 1 / 100)) == pytest.approx(2 * 0.2 - 0.2**2, abs=0.01)
    assert diagonality(torch.eye(10).flip(1)) < 0.3  # backwards alignment
    padded = torch.zeros(1, 12, 9)
    padded[0, :8, :8] = torch.eye(8)
    padded[0, 8:, :] = 1 / 9  # padding frames, must be ignored
    assert diagonality(padded, dec_lengths=[8], enc_lengths=[8]) == pytest.approx(1.0)
    assert diagonality(padded) < 0.9


def test_mel_cepstral_distortion(corpora):
    log_mel = LogMel(TTS_FEATURES)
    wav = load_audio(corpora / "fsdd" / "recordings" / "7_theo_3.wav", TTS_FEATURES.sample_rate)
    same, other = log_mel(wav), log_mel(load_audio(corpora / "fsdd" / "recordings" / "2_nicolas_4.wav", TTS_FEATURES.sample_rate))
    noisy = log_mel(wav + 0.01 * torch.randn(len(wav), generator=torch.Generator().manual_seed(0)))
    slower = same.repeat_interleave(2, dim=0)  # every frame twice: DTW aligns it back, MCD 0
    assert mel_cepstral_distortion(same, same) == pytest.approx(0.0, abs=1e-6)
    assert mel_cepstral_distortion(same, slower) == pytest.approx(0.0, abs=1e-3)
    assert 0 < mel_cepstral_distortion(same, noisy) < mel_cepstral_distortion(same, other)
