"""Streaming ASR: chunk-wise attention masks, chunk-wise encoders, speechs2s.decode.stream and transcribe --stream."""
import json

import pytest
import torch
from click.testing import CliRunner

from speechs2s.asr import ASR, load_asr
from speechs2s.audio import load_audio, save_audio
from speechs2s.cli import main
from speechs2s.decode.asr import decode_encoded
from speechs2s.decode.stream import two_pass_decode
from speechs2s.errors import ConfigError
from speechs2s.models import build_model
from speechs2s.nn.masks import chunk_mask

TINY = dict(vocab_size=20, d_model=32, n_heads=2, encoder_layers=2, decoder_layers=1, d_ff=64,
            subsampling_channels=4, dropout=0.0)


def test_chunk_mask_values():
    assert chunk_mask(5, 2).int().tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0],
                                               [1, 1, 1, 1, 1]]
    assert chunk_mask(6, 2, left_chunks=1).int().tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                                                               [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
                                                               [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert chunk_mask(3, 1, left_chunks=0).equal(torch.eye(3, dtype=torch.bool))


@pytest.mark.parametrize("name, extra", [("transformer_asr", {}), ("conformer_asr", {"causal_conv": True})])
def test_chunked_encoder_ignores_later_audio(name, extra):
    torch.manual_seed(0)
    model = build_model(name, {**TINY, **extra, "chunk_size": 4}).eval()
    features = torch.randn(1, 120, 80)
    changed = features.clone()
    changed[:, 60:] = torch.randn(1, 60, 80)  # encoder frame j reads feature frames 4j .. 4j + 6
    lengths = torch.tensor([120])
    before, after = model.encode(features, lengths)[0], model.encode(changed, lengths)[0]
    assert torch.equal(before[0, :12], after[0, :12])  # chunks 0-2 (frames 0-11) end at feature frame 50
    assert not torch.allclose(before[0, 12:], after[0, 12:])
    full = model.encode(changed, lengths, chunk_size=0)[0]  # full context: early frames hear the change
    assert not torch.allclose(full[0, :12], after[0, :12])


def test_chunking_options_are_validated():
    for options, message in [({"chunk_size": -1}, "chunk_size"), ({"left_chunks": -2}, "left_chunks"),
                             ({"dynamic_chunk_training": "yes"}, "dynamic_chunk_training")]:
        with pytest.raises(ConfigError, match=message):
            build_model("transformer_asr", {**TINY, **options})
    with pytest.raises(ConfigError, match="causal_conv"):
        build_model("conformer_asr", {**TINY, "dynamic_chunk_training": True})
    conformer = build_model("conformer_asr", TINY).eval()
    with pytest.raises(ConfigError, match="causal_conv"):
        conformer.encode(torch.randn(1, 50, 80), torch.tensor([50]), chunk_size=4)


def test_dynamic_chunk_training_draws_full_context_or_1_to_25():
    torch.manual_seed(0)
    model = build_model("transformer_asr", {**TINY, "dynamic_chunk_training": True}).train()
    draws = [model.attention_chunks(60, "cpu") for _ in range(200)]
    sizes = {int(mask[0].sum()) for mask in draws if mask is not None}  # frame 0 sees its own chunk
    assert 60 < sum(mask is None for mask in draws) < 140
    assert sizes <= set(range(1, 26)) and len(sizes) > 15
    assert model.eval().attention_chunks(60, "cpu") is None  # decoding: the config's chunk_size (0)


@pytest.fixture(scope="module")
def asr():
    return load_asr("default", "cpu")


@pytest.fixture(scope="module")
def speech(corpora):
    return corpora / "joe-lj/dev/wavs/LJ002-0076.ogg"  # 2.9 s: "The state side contained twelve good-sized rooms,"


@pytest.mark.parametrize("chunk_size, left_chunks, final",
                         [(8, -1, "rescore"), (4, 1, "rescore"), (8, -1, "beam"), (4, 1, "full")])
def test_streaming_equals_chunkwise_offline_decode(asr, speech, chunk_size, left_chunks, final):
    """The final text is the offline decode of the chunk-wise encoder output; with ``final="full"``, of the
    full-context one (the transcript ``transcribe`` gives)."""
    wav = load_audio(speech, 16000)
    stream = asr.stream(chunk_size, left_chunks, final=final)
    partials = [stream.accept(wav[i : i + 700]) for i in range(0, len(wav), 700)]  # blocks unaligned to hops
    transcript = stream.finish()
    features = asr.log_mel(wav)[None]
    chunks = (0, -1) if final == "full" else (chunk_size, left_chunks)
    enc, _ = asr.model.encode(features, torch.tensor([features.size(1)]), *chunks)
    assert stream.enc.shape == enc[0].shape
    torch.testing.assert_close(stream.enc, enc[0], atol=1e-4, rtol=1e-4)
    if final == "rescore":
        offline = two_pass_decode(asr.model, enc[0], asr.decode, asr.tokenizer.eos_id, lm=asr.lm)
    else:
        offline = decode_encoded(asr.model, enc, torch.tensor([enc.size(1)]), asr.decode, asr.tokenizer.eos_id,
                                 lm=asr.lm)[0]
    assert transcript.text == asr.tokenizer.decode(offline) and "good" in transcript.text
    if final == "full":
        assert transcript.text == asr.transcribe(wav, sample_rate=16000).text
    assert partials[0] == "" and partials[-1]  # nothing before the first chunk; text before the end
    assert transcript.words[-1].end <= transcript.duration and transcript.seconds > 0


def test_streaming_needs_a_ctc_head_and_chunks(asr):
    with pytest.raises(ConfigError, match="chunk_size >= 1"):
        asr.stream(chunk_size=0)
    with pytest.raises(ConfigError, match="final pass must be full, beam or rescore"):
        asr.stream(final="best")
    for name, options in [("transformer_asr", {"ctc_weight": 0.0}), ("lstm_asr", {})]:
        other = ASR(build_model(name, {**({} if name == "lstm_asr" else TINY), "vocab_size": 20, **options}),
                    asr.tokenizer, asr.features, "cpu")
        with pytest.raises(ConfigError, match="CTC head" if options else "Transformer or Conformer"):
            other.stream()
    assert asr.stream().finish().text == ""  # no audio: an empty transcript
    silence = asr.stream()
    silence.accept(torch.randn(16000) * 1e-4)
    assert silence.finish().text == ""  # no voice activity: no text, as offline


def test_streaming_final_passes_use_the_hotwords(speech):
    asr = load_asr("default", "cpu", lm=None, hotwords=["state side"], hotword_bonus=8.0)
    wav = load_audio(speech, 16000)
    texts = {}
    for final in ("beam", "rescore"):
        stream = asr.stream(final=final)
        stream.accept(wav)
        texts[final] = stream.finish().text
    enc = stream.enc[None]
    lengths = torch.tensor([enc.size(1)])
    biased = decode_encoded(asr.model, enc, lengths, asr.decode, asr.tokenizer.eos_id, 0, None, asr.context)[0]
    assert texts["beam"] == asr.tokenizer.decode(biased) and "state side" in texts["beam"]
    plain = decode_encoded(asr.model, enc, lengths, asr.decode, asr.tokenizer.eos_id)[0]
    assert "state side" not in asr.tokenizer.decode(plain)
    rescored = two_pass_decode(asr.model, enc[0], asr.decode, asr.tokenizer.eos_id, context=asr.context)
    assert texts["rescore"] == asr.tokenizer.decode(rescored)


def final_text(asr, wav, chunk_size=None) -> str:
    stream = asr.stream(chunk_size)
    stream.accept(wav)
    return stream.finish().text


def test_cli_stream_file_and_stdin(asr, speech, tmp_path):
    wav = load_audio(speech, 16000)
    result = CliRunner().invoke(main, ["transcribe", "--stream", "--no-pace", str(speech), "--threads", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("partial: ") and len(lines) > 2 and lines[-1] == f"final: {final_text(asr, wav)}"
    pcm = (wav * 32768).round().clamp(-32768, 32767).short()  # raw s16le on stdin, as arecord writes it
    result = CliRunner().invoke(main, ["transcribe", "--stream", "-", "--json", "--chunk-size", "4", "--threads", "1"],
                                input=pcm.numpy().tobytes())
    assert result.exit_code == 0, result.output
    transcript = json.loads(result.stdout[result.stdout.index("{"):])
    assert transcript["text"] == final_text(asr, pcm / 32768, 4) and transcript["file"] == "<stdin>"
    result = CliRunner().invoke(main, ["transcribe", "--stream", str(speech), str(speech)])
    assert result.exit_code == 1 and result.stderr.startswith("error: --stream takes one input")
    result = CliRunner().invoke(main, ["transcribe", "--stream", "--no-pace", str(tmp_path / "missing.wav")])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_stream_ends_segments_at_pauses(asr, corpora):
    """A long stream is cut at its pauses: each segment gets its own final pass and its times in the stream,
    a long silence is dropped, and the encoder holds one segment at most."""
    first, second = (load_audio(corpora / f"joe-lj/dev/wavs/LJ002-00{n}.ogg", 16000) for n in (76, 77))
    torch.manual_seed(0)
    pauses = [torch.randn(round(seconds * 16000)) * 1e-3 for seconds in (7.0, 1.5, 1.5)]  # faint noise
    wav = torch.cat([pauses[0], first, pauses[1], second, pauses[2]])
    stream, longest, ended = asr.stream(), 0, []
    for i in range(0, len(wav), 1600):
        stream.accept(wav[i : i + 1600])
        longest, ended = max(longest, len(stream.enc)), ended + [len(stream.segments)]
    transcript = stream.finish()
    assert [len(segment.text.split()) for segment in transcript.segments] == [8, 17]
    assert "twelve" in transcript.segments[0].text and "bedding" in transcript.segments[1].text
    assert transcript.text == " ".join(segment.text for segment in transcript.segments)
    one, two = transcript.segments
    second_start = 7.0 + len(first) / 16000 + 1.5
    assert 2.0 < one.start < 7.0 <= one.words[0].start and one.end < second_start <= two.words[0].start + 0.1
    assert two.words[-1].end <= two.end <= transcript.duration == len(wav) / 16000
    assert ended.index(1) < ended.index(2) < len(ended) - 1  # each ended while the audio went on, 1 s after it
    assert longest * stream.frame_seconds < 8.0  # never the whole 15.9 s
    whole = asr.stream(endpoint_silence=None)
    whole.accept(wav)  # one block: taken a chunk at a time
    assert len(whole.finish().segments) == 1 and len(whole.enc) * whole.frame_seconds > 15


def test_stream_cuts_a_segment_at_the_longest_length(asr, speech):
    short = ASR(asr.model, asr.tokenizer, asr.features, "cpu", max_segment_seconds=1.0)
    stream = short.stream()
    stream.accept(load_audio(speech, 16000))  # 2.9 s in one block
    segments = stream.finish().segments
    chunk = stream.chunk_size * stream.frame_seconds  # the length is checked chunk by chunk
    assert len(segments) >= 2 and all(segment.end - segment.start <= 1.0 + chunk for segment in segments)
    with pytest.raises(ConfigError, match="endpoint_silence"):
        asr.stream(endpoint_silence=0)


def test_cli_stream_prints_a_final_line_per_segment(corpora, tmp_path):
    first, second = (load_audio(corpora / f"joe-lj/dev/wavs/LJ002-00{n}.ogg", 16000) for n in (76, 78))
    path = tmp_path / "two.wav"
    save_audio(path, torch.cat([first, torch.zeros(24000), second]), 16000)
    result = CliRunner().invoke(main, ["transcribe", "--stream", "--no-pace", str(path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    finals = [i for i, line in enumerate(result.stdout.splitlines()) if line.startswith("final: ")]
    assert len(finals) == 2 and finals[1] > finals[0] + 1  # partials of the second sentence between the two
    assert "twelve" in result.stdout.splitlines()[finals[0]]
    result = CliRunner().invoke(main, ["transcribe", "--stream", "--no-pace", "--endpoint-silence", "0", str(path)])
    assert sum(line.startswith("final: ") for line in result.stdout.splitlines()) == 1
