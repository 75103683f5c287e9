"""TTS acoustic models: losses on hand-checked cases, shapes, and guided attention on real speech."""
import math

import pytest
import torch

from speechs2s.losses import guided_attention_loss, guided_attention_weights, mel_loss, stop_token_loss
from speechs2s.metrics import diagonality
from speechs2s.models import build_model
from speechs2s.models.tts_tacotron import Tacotron2, Tacotron2Config
from speechs2s.models.tts_transformer import TransformerTTS, TransformerTTSConfig

# The four shortest joe-lj dev sentences (1.1 - 1.9 s).
SHORT_IDS = ["LJ002-0020", "LJ002-0035", "LJ002-0012", "LJ002-0044"]


def tiny_tacotron(vocab_size: int, **options) -> Tacotron2:
    return Tacotron2(Tacotron2Config(vocab_size=vocab_size, reduction_factor=4, embedding_dim=64, prenet_dim=64,
                                     attention_rnn_dim=128, decoder_rnn_dim=128, attention_dim=64, location_filters=8,
                                     postnet_channels=64, postnet_layers=3, **options))


def tiny_transformer(vocab_size: int, **options) -> TransformerTTS:
    return TransformerTTS(TransformerTTSConfig(vocab_size=vocab_size, reduction_factor=4, d_model=64, n_heads=2,
                                               d_ff=128, encoder_layers=2, decoder_layers=2, embedding_dim=64,
                                               prenet_dim=64, postnet_channels=64, postnet_layers=3, guided_layers=1,
                                               dropout=0.0, **options))


def random_batch(vocab_size=20, n_mels=80):
    return dict(tokens=torch.randint(3, vocab_size, (3, 9)), token_lengths=torch.tensor([9, 5, 2]),
                mels=torch.randn(3, 23, n_mels), mel_lengths=torch.tensor([23, 14, 5]))


# --- losses -------------------------------------------------------------------------------------


def test_guided_attention_weights_by_hand():
    # N = T = 2, g = 0.2: W = 1 - exp(-(n/2 - t/2)^2 / 0.08) -> 0 on the diagonal, 1 - exp(-3.125) off it
    weights = guided_attention_weights(torch.tensor([2]), torch.tensor([2]), sigma=0.2)
    off = 1 - math.exp(-3.125)
    assert torch.allclose(weights[0], torch.tensor([[0.0, off], [off, 0.0]]))


def test_guided_attention_loss_by_hand():
    tokens, frames = torch.tensor([2]), torch.tensor([2])
    diagonal = torch.eye(2)[None]
    assert guided_attention_loss(diagonal, tokens, frames, 0.2).item() == pytest.approx(0.0)
    # uniform attention: each step pays 0.5 * W[t, other token]; mean over the 2 steps
    uniform = torch.full((1, 2, 2), 0.5)
    assert guided_attention_loss(uniform, tokens, frames, 0.2).item() == pytest.approx(0.5 * (1 - math.exp(-3.125)))
    # anti-diagonal pays the full off-diagonal penalty every step
    assert guided_attention_loss(diagonal.flip(-1), tokens, frames, 0.2).item() == pytest.approx(1 - math.exp(-3.125))


def test_guided_attention_loss_ignores_padding_and_averages_heads():
    # item 1 has 1 token and 1 frame (its W is all zero); padded cells carry junk that must not count
    attention = torch.full((2, 3, 2, 2), 0.5)  # (B, H, T, N)
    attention[1, :, :, :] = 7.0
    loss = guided_attention_loss(attention, torch.tensor([2, 1]), torch.tensor([2, 1]), 0.2)
    expected = (0.5 * (1 - math.exp(-3.125)) * 2 * 3) / (3 * 3)  # 2 steps x 3 heads of item 0, 3 steps in all
    assert loss.item() == pytest.approx(expected)


def test_stop_and_mel_losses():
    lengths = torch.tensor([3, 2])
    perfect = torch.tensor([[-20.0, -20.0, 20.0, 99.0], [-20.0, 20.0, 99.0, 99.0]])  # padding is junk
    assert stop_token_loss(perfect, lengths).item() < 1e-6
    wrong = -perfect
    assert stop_token_loss(wrong, lengths, pos_weight=5.0).item() == pytest.approx((3 * 20 + 2 * 5 * 20) / 5, rel=1e-4)
    target = torch.zeros(2, 4, 3)
    predicted = torch.ones(2, 4, 3)
    predicted[0, 3] = 100.0  # padding frame of item 0 (length 3) is ignored
    assert mel_loss(predicted, target, torch.tensor([3, 4]), "l1").item() == pytest.approx(1.0)
    assert mel_loss(2 * predicted, target, torch.tensor([3, 4]), "l1+l2").item() == pytest.approx(2.0 + 4.0)


# --- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [tiny_tacotron, tiny_transformer])
def test_forward_backward_and_step_shapes(make):
    torch.manual_seed(0)
    model = make(20)
    out = model(random_batch())
    assert set(out) == {"loss", "mel", "stop", "guided"}
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if "transition_agent" not in name)
    assert int(model.batches_seen) == 1

    model.eval()
    tokens, lengths = torch.randint(3, 20, (2, 7)), torch.tensor([7, 4])
    state = model.start(tokens, lengths)
    allowed = torch.ones(2, 7, dtype=torch.bool)
    allowed[:, 5:] = False
    frames, stop_logits, alignment, state = model.step(torch.zeros(2, 80), state, allowed)
    assert frames.shape == (2, 4, 80) and stop_logits.shape == (2, 4) and alignment.shape == (2, 7)
    assert torch.allclose(alignment.sum(-1), torch.ones(2), atol=1e-5)
    assert alignment[:, 5:].abs().max() == 0 and alignment[1, 4:].abs().max() == 0  # window and padding respected


@pytest.mark.parametrize("make", [tiny_tacotron, tiny_transformer])
def test_scheduled_sampling_feeds_the_models_own_previous_frames(make, monkeypatch):
    torch.manual_seed(0)
    model = make(20, scheduled_sampling=1.0)
    calls = []  # (previous fed, frames predicted) of every teacher-forced pass
    teacher_forcing = model.teacher_forcing

    def recording(tokens, token_lengths, previous):
        outputs = teacher_forcing(tokens, token_lengths, previous)
        calls.append((previous.detach(), outputs[0].detach()))
        return outputs

    monkeypatch.setattr(model, "teacher_forcing", recording)
    out = model(random_batch())
    out["loss"].backward()
    (real, predicted), (fed, _) = calls
    assert real[:, 0].abs().max() == 0 and fed[:, 0].abs().max() == 0  # both start from the "go" frame
    assert torch.equal(fed[:, 1:], predicted[:, 3::4][:, :fed.size(1) - 1])  # then p = 1: always its own last frame
    assert not torch.equal(fed, real) and torch.isfinite(out["loss"])
    model.eval()  # inference never mixes: one pass
    calls.clear()
    model(random_batch())
    assert len(calls) == 1
    with pytest.raises(ValueError, match="scheduled_sampling"):
        make(20, scheduled_sampling=1.5)


def test_registry_builds_both_and_rejects_bad_options():
    from speechs2s.errors import ConfigError

    assert isinstance(build_model("tacotron2", {"vocab_size": 10, "embedding_dim": 32}), Tacotron2)
    assert isinstance(build_model("transformer_tts", {"vocab_size": 10, "guided_heads": [[-1, 0]]}), TransformerTTS)
    with pytest.raises(ConfigError, match="guided_heads"):
        build_model("transformer_tts", {"vocab_size": 10, "guided_heads": [[0, 9]]})
    with pytest.raises(ConfigError, match="mel_los"):
        build_model("tacotron2", {"vocab_size": 10, "mel_loss": "l3"})
    with pytest.raises(ConfigError, match="not divisible by n_heads"):  # checked by the model, not its config
        build_model("transformer_tts", {"vocab_size": 10, "d_model": 100, "n_heads": 3})


def test_guided_weight_decays_with_training_batches():
    model = tiny_transformer(20, guided_weight=2.0, guided_half_life=10)
    assert model.guided_weight() == pytest.approx(2.0)
    model.batches_seen.fill_(20)
    assert model.guided_weight() == pytest.approx(0.5)


# --- guided attention on real speech ------------------------------------------------------------


@pytest.fixture(scope="module")
def short_batch(corpora):
    from speechs2s.audio import TTS_FEATURES, LogMel, load_audio
    from speechs2s.data.collate import collate_tts
    from speechs2s.text.tokenizers import CharTokenizer

    root = corpora / "joe-lj" / "dev"
    lines = (root / "metadata.csv").read_text(encoding="utf-8").splitlines()
    texts = dict(line.split("|")[::2] for line in lines)
    tokenizer, log_mel = CharTokenizer("tts"), LogMel(TTS_FEATURES)
    items = [{"id": i, "tokens": torch.tensor(tokenizer.encode(texts[i])),
              "mel": log_mel(load_audio(root / "wavs" / f"{i}.ogg", TTS_FEATURES.sample_rate))} for i in SHORT_IDS]
    return collate_tts(items), tokenizer.vocab_size, torch.cat([item["mel"] for item in items])


def train_alignment(model, batch, mels, steps: int, lr: float = 2e-3):
    """Train on one batch; return (focus rate, diagonality) of the guided heads, teacher-forced, in eval mode."""
    torch.manual_seed(0)
    model.set_feature_stats(mels.mean(0), mels.std(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    scalars, figures = model.eval().validation_extras(batch)
    assert set(figures) == {"alignment", "mel"}
    return scalars["focus_rate"], scalars["diagonality"]


def test_transformer_guided_attention_becomes_diagonal(short_batch):
    batch, vocab_size, mels = short_batch
    torch.manual_seed(0)
    focus, diagonal = train_alignment(tiny_transformer(vocab_size), batch, mels, steps=60)
    assert diagonal > 0.95 and focus > 0.3


@pytest.mark.slow
def test_transformer_without_guided_attention_stays_unaligned(short_batch):
    """The control for the test above: same model and data, no guided loss, more steps."""
    batch, vocab_size, mels = short_batch
    torch.manual_seed(0)
    _, diagonal = train_alignment(tiny_transformer(vocab_size, guided_weight=0.0), batch, mels, steps=150)
    assert diagonal < 0.6  # uniform attention scores 0.36


def test_tacotron_guided_attention_becomes_diagonal(short_batch):
    batch, vocab_size, mels = short_batch
    torch.manual_seed(0)
    focus, diagonal = train_alignment(tiny_tacotron(vocab_size), batch, mels, steps=30)
    assert diagonal > 0.9 and focus > 0.3  # forward attention spreads each step over ~2 tokens


@pytest.mark.slow
def test_tacotron_guided_attention_alone_becomes_diagonal(short_batch):
    """Without forward attention's built-in monotonicity (which alone gives diagonality ~0.98 here)."""
    batch, vocab_size, mels = short_batch
    torch.manual_seed(0)
    focus, diagonal = train_alignment(tiny_tacotron(vocab_size, forward_attention=False), batch, mels, steps=80)
    assert diagonal > 0.95 and focus > 0.4


@pytest.mark.slow
@pytest.mark.parametrize("make, steps", [(tiny_transformer, 500), (tiny_tacotron, 200)])
def test_trained_model_free_runs_to_the_right_length(short_batch, make, steps):
    """After fitting the four sentences, free-running synthesis (stop token, monotonic window)
    stops within 15% of the real durations, with a diagonal alignment."""
    from speechs2s.decode.tts import synthesize_batch

    batch, vocab_size, mels = short_batch
    torch.manual_seed(0)
    model = make(vocab_size)
    train_alignment(model, batch, mels, steps=steps)
    result = synthesize_batch(model, batch["tokens"], batch["token_lengths"])
    ratio = result.lengths / batch["mel_lengths"]
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio
    steps_run = (result.lengths + model.reduction_factor - 1) // model.reduction_factor
    assert diagonality(result.alignments, steps_run, batch["token_lengths"]) > 0.9
