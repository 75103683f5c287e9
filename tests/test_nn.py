import torch
import torch.nn.functional as F

from speechs2s.losses import ctc_loss, label_smoothed_cross_entropy
from speechs2s.nn import (
    Conv2dSubsampling,
    LocationSensitiveAttention,
    MultiHeadAttention,
    PositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
    causal_mask,
    key_padding_mask,
    sequence_mask,
    sinusoids,
)


def test_sequence_and_key_padding_masks():
    lengths = torch.tensor([3, 1, 4])
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(sequence_mask(lengths), expected)
    assert sequence_mask(lengths, 6).shape == (3, 6)
    assert torch.equal(key_padding_mask(lengths), expected[:, None, None, :])


def test_causal_mask_is_lower_triangular_and_aligned_to_the_end_with_a_cache():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    # two new queries after three cached positions see keys 0..3 and 0..4
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))


def test_attention_weights_sum_to_one_over_valid_keys_and_match_sdpa():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).eval()
    query, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = key_padding_mask(torch.tensor([5, 2]), 5)
    out, weights = attention(query, memory, memory, mask, need_weights=True)
    fast, no_weights = attention(query, memory, memory, mask)
    assert no_weights is None and weights.shape == (2, 4, 3, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 3))
    assert weights[1, :, :, 2:].abs().max() == 0
    torch.testing.assert_close(out, fast)
    # padded keys do not influence the result
    memory[1, 2:] = 100.0
    torch.testing.assert_close(attention(query, memory, memory, mask)[0][1], fast[1])


def test_encoder_ignores_padding_content():
    torch.manual_seed(0)
    encoder = TransformerEncoder(2, 16, 2, 32).eval()
    x = torch.randn(1, 6, 16)
    mask = key_padding_mask(torch.tensor([4]), 6)
    out, weights = encoder(x, mask, need_weights=True)
    assert len(weights) == 2 and weights[0].shape == (1, 2, 6, 6)
    x[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(encoder(x, mask)[0][:, :4], out[:, :4])


def test_decoder_causal_mask_blocks_the_future_and_cache_matches_full_pass():
    torch.manual_seed(0)
    decoder = TransformerDecoder(2, 16, 2, 32).eval()
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    memory_mask = key_padding_mask(torch.tensor([7, 3]), 7)
    full, full_cache, cross = decoder(x, memory, memory_mask, need_weights=True)
    assert full_cache.shape == (2, 2, 5, 32) and cross[0].shape == (2, 2, 5, 7)  # (B, layers, L, keys + values)
    assert cross[-1][1, :, :, 3:].abs().max() == 0

    changed = x.clone()
    changed[:, 3:] = torch.randn(2, 2, 16)
    torch.testing.assert_close(decoder(changed, memory, memory_mask)[0][:, :3], full[:, :3])

    cache, steps = decoder.empty_cache(memory), []
    projected = decoder.project_memory(memory)
    assert projected.shape == (2, 2, 7, 32)  # (B, layers, T, keys + values)
    for i in range(5):
        step, cache, _ = decoder(x[:, i:i + 1], None, memory_mask, cache, projected_memory=projected)
        steps.append(step)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    torch.testing.assert_close(cache, full_cache)  # each step projected only its own position


def test_positional_encoding_offsets_and_learned_scale():
    torch.testing.assert_close(sinusoids(4, 8, offset=3), sinusoids(7, 8)[3:])
    assert torch.allclose(sinusoids(1, 8)[0], torch.tensor([0.0, 1.0] * 4))
    scaled = PositionalEncoding(8, learned_scale=True)
    assert [name for name, _ in scaled.named_parameters()] == ["alpha"]
    x = torch.zeros(1, 4, 8)
    torch.testing.assert_close(scaled(x, offset=2), sinusoids(4, 8, offset=2)[None])
    assert list(PositionalEncoding(8).parameters()) == []
    torch.testing.assert_close(PositionalEncoding(8, input_scale=2.0)(torch.ones(1, 1, 8)), 2 + sinusoids(1, 8)[None])


def test_conv2d_subsampling_lengths_match_output_frames():
    subsampling = Conv2dSubsampling(80, 32, channels=4)
    for frames in (7, 8, 13, 100, 101):
        out, lengths = subsampling(torch.randn(2, frames, 80), torch.tensor([frames, 7]))
        assert out.shape == (2, int(lengths[0]), 32)
        assert int(lengths[1]) == 1
        assert int(lengths[0]) == ((frames - 1) // 2 - 1) // 2
    for frames in (1, 3, 6):  # a batch of clips under ~70 ms: padded to the receptive field, one frame out
        out, lengths = subsampling(torch.randn(2, frames, 80), torch.tensor([frames, 1]))
        assert out.shape == (2, 1, 32) and lengths.tolist() == [1, 1] and torch.isfinite(out).all()


def test_location_sensitive_attention_normalises_over_valid_frames():
    torch.manual_seed(0)
    attention = LocationSensitiveAttention(query_dim=12, memory_dim=10, attention_dim=8, location_kernel=5)
    memory = torch.randn(2, 6, 10)
    mask = sequence_mask(torch.tensor([6, 4]))
    location = torch.rand(2, 2, 6)
    context, weights = attention(torch.randn(2, 12), memory, attention.process_memory(memory), location, mask)
    assert context.shape == (2, 10) and weights.shape == (2, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert weights[1, 4:].abs().max() == 0
    torch.testing.assert_close(context, torch.einsum("bt,btd->bd", weights, memory))


def test_label_smoothed_cross_entropy_ignores_padding():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 6), torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0]])
    lengths = torch.tensor([3, 1])
    loss = label_smoothed_cross_entropy(logits, targets, lengths)
    valid = logits[[0, 0, 0, 1], [0, 1, 2, 0]]
    torch.testing.assert_close(loss, F.cross_entropy(valid, torch.tensor([1, 2, 3, 4])))
    logits[1, 1:] = 50.0
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, targets, lengths), loss)
    smoothed = label_smoothed_cross_entropy(logits, targets, lengths, smoothing=0.1)
    torch.testing.assert_close(smoothed, F.cross_entropy(valid, torch.tensor([1, 2, 3, 4]), label_smoothing=0.1))


def test_ctc_loss_is_per_target_token_and_low_for_the_right_alignment():
    targets, target_lengths = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    input_lengths = torch.tensor([4, 3])
    path = torch.tensor([[1, 0, 2, 2], [3, 3, 0, 0]])
    log_probs = (F.one_hot(path, 5).float() * 10).log_softmax(-1)
    good = ctc_loss(log_probs, input_lengths, targets, target_lengths)
    bad = ctc_loss(torch.zeros(2, 4, 5).log_softmax(-1), input_lengths, targets, target_lengths)
    assert good < 0.01 < bad
    total = F.ctc_loss(torch.zeros(4, 2, 5).log_softmax(-1), targets, input_lengths, target_lengths, reduction="sum")
    torch.testing.assert_close(bad, total / 3)
