import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speechs2s.errors import ConfigError
from speechs2s.decode.asr import (
    CTCPrefixScorer,
    DecodeConfig,
    beam_search,
    ctc_greedy,
    ctc_prefix_beam_search,
    decode,
    greedy_attention,
)

from speechs2s.models.asr_lstm import LSTMASR, LSTMASRConfig
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig

EOS = 5  # vocabulary of the tiny models: 0 blank, 1..4 tokens, 5 sos/eos
N_MELS = 8
MODELS = ["transformer", "lstm"]


def tiny_model(kind: str, seed: int = 0, ctc_weight: float = 0.3):
    """A real tiny ASR model (random weights; output layers scaled up for the peaky distributions of a trained one)."""
    torch.manual_seed(seed)
    options = dict(vocab_size=6, sos_id=EOS, n_mels=N_MELS, ctc_weight=ctc_weight)
    if kind == "transformer":
        model = TransformerASR(TransformerASRConfig.preset("tiny", d_model=32, d_ff=64, **options))
    else:
        model = LSTMASR(LSTMASRConfig.preset("tiny", encoder_hidden=16, decoder_hidden=32, attention_dim=16, **options))
    with torch.no_grad():
        model.output.weight.mul_(8)
        if model.ctc_head is not None:
            model.ctc_head.weight.mul_(8)
    return model.eval()


def _batch(lengths=(40, 28, 52), seed=1):
    torch.manual_seed(seed)
    lengths = torch.tensor(lengths)
    return torch.randn(len(lengths), int(lengths.max()), N_MELS), lengths


@torch.no_grad()
def joint_score(model, features, lengths, tokens, ctc_weight):
    """(1 - w) * log p_att(tokens, eos) + w * log p_ctc(tokens), from the teacher-forced decoder and ctc_loss."""
    enc, enc_lengths = model.encode(features, lengths)
    inputs, targets = torch.tensor([[EOS] + tokens]), torch.tensor([tokens + [EOS]])
    att = float(model.decoder_log_probs(inputs, enc, enc_lengths).gather(2, targets[..., None]).sum())
    if ctc_weight == 0:
        return att
    log_probs = model.ctc_log_probs(enc)[0]  # (T, V)
    if not tokens:
        ctc = float(log_probs[:, 0].sum())
    else:
        ctc = -float(F.ctc_loss(log_probs, torch.tensor([tokens]), enc_lengths, torch.tensor([len(tokens)]), reduction="sum"))
    return (1 - ctc_weight) * att + ctc_weight * ctc


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    best_paths = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [3, 0, 3, 3, 3, 0, 2, 2]])
    log_probs = F.one_hot(best_paths, 4).float().mul(5).log_softmax(-1)
    assert ctc_greedy(log_probs, torch.tensor([8, 8])) == [[1, 1, 2], [3, 3, 2]]
    assert ctc_greedy(log_probs, torch.tensor([3, 6])) == [[1], [3, 3]]  # frames past the length are ignored


def _brute_force(log_probs, prefix, exact):
    """Sum of p(alignment) over all alignments whose collapse equals (exact) or starts with prefix."""
    total = 0.0
    T, V = log_probs.shape
    for path in itertools.product(range(V), repeat=T):
        labels = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
        if (labels == prefix) if exact else (labels[: len(prefix)] == prefix):
            total += math.exp(sum(float(log_probs[t, k]) for t, k in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def test_ctc_prefix_score_equals_brute_force_sum_over_alignments():
    torch.manual_seed(0)
    T, V, eos = 4, 3, 3  # eos is outside the CTC vocabulary; the scorer only compares ids
    log_probs = torch.randn(1, T, V).log_softmax(-1)
    padded = torch.cat([log_probs, torch.randn(1, 2, V).log_softmax(-1)], 1)  # 2 junk frames beyond the length
    for x in (log_probs, padded):
        for path in ([1, 1], [2, 1], [1, 2, 2], [2, 2, 1]):
            scorer = CTCPrefixScorer(torch.cat([x, torch.zeros(1, x.shape[1], 1)], -1), torch.tensor([T]), eos_id=eos)
            prefix = []
            for token in path:
                candidates = torch.tensor([[1, 2, eos]])
                psi = scorer.prefix_scores(candidates)[0]
                for c, score in zip([1, 2], psi[:2].tolist()):
                    assert score == pytest.approx(_brute_force(log_probs[0], prefix + [c], exact=False), abs=1e-5)
                assert float(psi[2]) == pytest.approx(_brute_force(log_probs[0], prefix, exact=True), abs=1e-5)
                scorer.advance(torch.tensor([0]), torch.tensor([token]), psi[token - 1 : token])
                prefix.append(token)
    assert float(scorer.prefix_scores(torch.tensor([[0]]))[0, 0]) == float("-inf")  # blank is never a label


def test_ctc_prefix_scorer_matches_ctc_loss_on_a_long_utterance():
    torch.manual_seed(1)
    T, V, eos = 300, 30, 29
    log_probs = torch.randn(2, T, V).mul(4).log_softmax(-1)  # peaky, like a trained model
    lengths = torch.tensor([T, 250])
    labels = torch.randint(1, eos, (40,))
    scorer = CTCPrefixScorer(log_probs, lengths, eos_id=eos)
    for token in labels.tolist():
        psi = scorer.prefix_scores(torch.tensor([[token], [token]]))
        scorer.advance(torch.tensor([0, 1]), torch.tensor([token, token]), psi[:, 0])
    full = scorer.prefix_scores(torch.tensor([[eos], [eos]]))[:, 0]
    expected = -F.ctc_loss(log_probs.transpose(0, 1), labels.expand(2, -1), lengths, torch.tensor([40, 40]), reduction="none")
    assert full.tolist() == pytest.approx(expected.tolist(), rel=1e-5)


def test_ctc_prefix_beam_search_finds_the_most_probable_labelling():
    torch.manual_seed(3)
    log_probs = torch.randn(4, 3).mul(2).log_softmax(-1)
    labellings = [list(y) for n in range(5) for y in itertools.product([1, 2], repeat=n)]
    exact = {tuple(y): _brute_force(log_probs, y, exact=True) for y in labellings}
    best = max(exact, key=exact.get)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=20)
    assert tuple(hyps[0].tokens) == best
    for hyp in hyps:
        assert hyp.score == pytest.approx(exact[tuple(hyp.tokens)], abs=1e-5)


@pytest.mark.parametrize("kind", MODELS)
def test_beam_one_equals_greedy(kind):
    model = tiny_model(kind)
    features, lengths = _batch()
    config = DecodeConfig(mode="beam", beam_size=1, ctc_weight=0.0, max_len_ratio=2.0)
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        greedy = greedy_attention(model, enc, enc_lengths, EOS, max_len_ratio=2.0)
    assert decode(model, features, lengths, config, EOS) == greedy
    assert decode(model, features, lengths, DecodeConfig(mode="greedy", max_len_ratio=2.0), EOS) == greedy
    assert any(greedy), "the tiny model should emit some tokens"


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_beam_scores_at_least_as_well_as_greedy(kind, ctc_weight):
    """Beam hypotheses carry their exact joint score (checked against the teacher-forced decoder and
    ctc_loss); under the attention decoder alone, the criterion greedy decoding follows, the beam's
    best is never worse than the greedy hypothesis."""
    features, lengths = _batch((40, 28, 52, 33), seed=2)
    for seed in range(2):
        model = tiny_model(kind, seed=seed)
        config = DecodeConfig(mode="beam", beam_size=4, ctc_weight=ctc_weight, length_penalty=0.0, max_len_ratio=1.0)
        with torch.no_grad():
            enc, enc_lengths = model.encode(features, lengths)
            greedy = greedy_attention(model, enc, enc_lengths, EOS, max_len_ratio=1.0)
            beams = beam_search(model, enc, enc_lengths, config, EOS)
            for b in range(len(lengths)):
                one = (features[b : b + 1, : lengths[b]], lengths[b : b + 1])
                best = beams[b][0]
                assert best.score == pytest.approx(joint_score(model, *one, best.tokens, ctc_weight), abs=1e-3)
                if ctc_weight == 0:
                    assert best.score >= joint_score(model, *one, greedy[b], ctc_weight) - 1e-3
                assert len(best.tokens) <= int(enc_lengths[b])  # max_len_ratio 1.0 guard


@pytest.mark.parametrize("kind", MODELS)
def test_batched_beam_search_equals_one_utterance_at_a_time(kind):
    """Utterances that finish early leave the batch; the others' search is unchanged by them."""
    model = tiny_model(kind, seed=3)
    features, lengths = _batch((52, 9, 30, 14), seed=4)
    config = DecodeConfig(beam_size=3, ctc_weight=0.3, max_len_ratio=1.0)
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        batched = beam_search(model, enc, enc_lengths, config, EOS)
        for b in range(len(lengths)):
            one = beam_search(model, *model.encode(features[b:b + 1, :lengths[b]], lengths[b:b + 1]), config, EOS)[0]
            assert [h.tokens for h in batched[b]] == [h.tokens for h in one]
            assert [h.score for h in batched[b]] == pytest.approx([h.score for h in one], abs=1e-4)


def test_beam_search_respects_max_length_and_returns_ranked_hypotheses():
    model = tiny_model("lstm", seed=1)
    features, lengths = _batch((12, 9))
    config = DecodeConfig(beam_size=3, ctc_weight=0.3, max_len_ratio=1.0)
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        hyps = beam_search(model, enc, enc_lengths, config, EOS)
    for utterance, n in zip(hyps, enc_lengths.tolist()):
        assert 1 <= len(utterance) <= 3 + 3  # K finished, or the survivors forced to end at the limit
        assert all(len(h.tokens) <= n and EOS not in h.tokens and 0 not in h.tokens for h in utterance)
        normalized = [h.score / (len(h.tokens) + 1) for h in utterance]
        assert normalized == sorted(normalized, reverse=True)


def _ctc_log_p(log_probs, tokens):
    """log p_ctc(tokens) for one utterance's ``(T, V)`` log-probs."""
    if not tokens:
        return float(log_probs[:, 0].sum())
    lengths = (torch.tensor([len(log_probs)]), torch.tensor([len(tokens)]))
    return -float(F.ctc_loss(log_probs, torch.tensor([tokens]), *lengths, reduction="sum"))


def test_ctc_modes_and_models_trained_with_one_objective():
    features, lengths = _batch()
    model = tiny_model("transformer", seed=2)
    ctc_only = tiny_model("transformer", seed=2, ctc_weight=1.0)
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        log_probs = model.ctc_log_probs(enc)
        best_path = ctc_greedy(log_probs, enc_lengths)
        prefix_beam = decode(model, features, lengths, DecodeConfig(ctc_weight=1.0, beam_size=8), EOS)
    assert decode(model, features, lengths, DecodeConfig(mode="ctc_greedy"), EOS) == best_path
    # a CTC-only model decodes with its CTC head in every mode
    assert decode(ctc_only, features, lengths, DecodeConfig(mode="greedy"), EOS) == best_path
    assert decode(ctc_only, features, lengths, DecodeConfig(ctc_weight=0.3, beam_size=8), EOS) == prefix_beam
    for b, tokens in enumerate(prefix_beam):  # the prefix beam search result is at least as likely as the best path
        n = int(enc_lengths[b])
        assert _ctc_log_p(log_probs[b, :n], tokens) >= _ctc_log_p(log_probs[b, :n], best_path[b]) - 1e-5
    with pytest.raises(ConfigError, match="no CTC head"):
        decode(tiny_model("lstm", ctc_weight=0.0), features, lengths, DecodeConfig(mode="ctc_greedy"), EOS)


def never_ending(model):
    """The same real model, except that its decoder never gives <eos> any probability."""

    class NeverEnding(type(model)):
        def decode_step(self, prev_tokens, state):
            log_probs, state = super().decode_step(prev_tokens, state)
            return log_probs.index_fill(1, torch.tensor([EOS]), float("-inf")), state

    clone = NeverEnding(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.eval()


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_beam_search_without_any_finished_hypothesis_returns_the_best_live_one(kind, ctc_weight):
    """No hypothesis can end with eos (the bug behind an IndexError in ``speechs2s transcribe``): every
    utterance still gets its best hypotheses, ranked, each scored without eos."""
    model = never_ending(tiny_model(kind, seed=1))
    features, lengths = _batch((40, 12, 28))
    config = DecodeConfig(beam_size=3, ctc_weight=ctc_weight, max_len_ratio=0.5)
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        beams = beam_search(model, enc, enc_lengths, config, EOS)
        for b, hyps in enumerate(beams):
            assert hyps and all(math.isfinite(h.score) and EOS not in h.tokens for h in hyps)
            normalized = [h.score / (len(h.tokens) + 1) for h in hyps]
            assert normalized == sorted(normalized, reverse=True)
            if ctc_weight == 0:  # every hypothesis runs to the length limit; its score is log p_att(tokens)
                best = hyps[0].tokens
                assert len(best) == math.ceil(0.5 * int(enc_lengths[b]))
                inputs = torch.tensor([[EOS] + best[:-1]])
                att = model.decoder_log_probs(inputs, enc[b:b + 1], enc_lengths[b:b + 1])
                assert hyps[0].score == pytest.approx(float(att.gather(2, torch.tensor([best])[..., None]).sum()), abs=1e-3)
    assert decode(model, features, lengths, config, EOS) == [hyps[0].tokens for hyps in beams]
