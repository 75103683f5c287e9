import dataclasses
import io
import json
from unittest.mock import ANY

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import speechs2s
import speechs2s.asr
from speechs2s.asr import ASR
from speechs2s.audio import ASR_FEATURES, load_audio
from speechs2s.checkpoint import save_checkpoint
from speechs2s.cli import main
from speechs2s.decode.asr import DecodeConfig
from speechs2s.errors import AudioError
from speechs2s.metrics import wer
from speechs2s.transcript_writers import to_srt, to_vtt
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.text.tokenizers import BPETokenizer, CharTokenizer, PhonemeTokenizer
from speechs2s.vad import VADConfig, file_frame_levels, frame_levels, has_speech, speech_segments

GREEDY = DecodeConfig(mode="greedy", max_len_ratio=0.5)
DIGITS = ["0_george_0", "1_jackson_1", "2_nicolas_2", "3_theo_3", "4_yweweler_4"]


@pytest.fixture(scope="module")
def tiny_asr():
    """A real (untrained, tiny) Transformer ASR with a char tokenizer: decoding output is arbitrary
    but deterministic, which is what the plumbing tests need."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    config = TransformerASRConfig.preset("tiny", vocab_size=tokenizer.vocab_size, sos_id=tokenizer.sos_id,
                                         d_model=32, d_ff=64, encoder_layers=2, decoder_layers=1)
    model = TransformerASR(config).eval()
    with torch.no_grad():
        model.output.bias[tokenizer.eos_id] -= 2.0  # make it say something before it stops
    return ASR(model, tokenizer, ASR_FEATURES, "cpu"), config


def _digits(corpora, names=DIGITS):
    return [load_audio(corpora / "fsdd" / "recordings" / f"{name}.wav") for name in names]  # 8 kHz


def _concatenate(clips, gap_seconds, sample_rate=8000, noise_db=-65.0, seed=0):
    """Clips joined by gaps of quiet noise; returns the waveform and each clip's (start, end) in seconds."""
    rng = np.random.default_rng(seed)
    gap = int(gap_seconds * sample_rate)
    pieces, spans, position = [], [], 0
    for clip in clips:
        pieces += [rng.normal(0, 10 ** (noise_db / 20), gap).astype(np.float32), clip.numpy()]
        spans.append(((position + gap) / sample_rate, (position + gap + len(clip)) / sample_rate))
        position += gap + len(clip)
    pieces.append(rng.normal(0, 10 ** (noise_db / 20), gap).astype(np.float32))
    return np.concatenate(pieces), spans


# --- voice activity detection ---------------------------------------------------------------------


def test_vad_splits_tone_and_silence_at_the_silences():
    rate = 16000
    tone = lambda seconds: 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)  # noqa: E731
    silence = lambda seconds: np.random.default_rng(1).normal(0, 1e-4, int(seconds * rate))  # noqa: E731
    wav = np.concatenate([silence(1.0), tone(1.0), silence(1.0), tone(1.5), silence(0.2), tone(0.5), silence(1.0)])
    config = VADConfig(padding_seconds=0.0)
    segments = speech_segments(frame_levels(wav, 320), 0.02, config)
    # the 0.2 s pause is shorter than min_silence_seconds and bridged
    assert np.ravel(segments) == pytest.approx(np.ravel([(1.0, 2.0), (3.0, 5.2)]), abs=0.021)
    padded = speech_segments(frame_levels(wav, 320), 0.02, VADConfig(padding_seconds=0.2))
    assert np.ravel(padded) == pytest.approx(np.ravel([(0.8, 2.2), (2.8, 5.4)]), abs=0.021)
    assert not has_speech(torch.from_numpy(silence(2.0)).float(), rate)
    assert not has_speech(torch.zeros(rate), rate)
    assert has_speech(torch.from_numpy(np.concatenate([silence(0.5), tone(0.3)])).float(), rate)


def test_vad_splits_long_speech_at_its_quietest_point_and_hard_splits_without_silence():
    quiet, loud = np.full(500, -70.0), np.full(3000, -20.0)  # 20 ms frames: 10 s of silence, 60 s of speech
    dipped = loud.copy()
    dipped[1400] = -35.0  # a dip (too short to be a pause) 28 s into the speech
    config = VADConfig(padding_seconds=0.0, max_segment_seconds=30.0)
    segments = speech_segments(np.concatenate([quiet, dipped, quiet]), 0.02, config)
    assert np.ravel(segments) == pytest.approx(np.ravel([(10.0, 38.0), (38.0, 67.98), (67.98, 70.0)]))
    flat = speech_segments(np.concatenate([quiet, loud, quiet]), 0.02, config)
    assert np.ravel(flat) == pytest.approx(np.ravel([(10.0, 39.98), (39.98, 69.96), (69.96, 70.0)]))  # cut at the maximum length


def test_vad_finds_each_real_digit_between_gaps(corpora, tmp_path):
    wav, spans = _concatenate(_digits(corpora), gap_seconds=0.8)
    path = tmp_path / "digits.flac"
    sf.write(path, wav, 8000)
    levels, frame_seconds = file_frame_levels(path, 0.02, block_seconds=1.0)  # many small blocks
    whole = frame_levels(load_audio(path), 160)
    assert len(levels) == len(whole) + 1 and np.allclose(levels[:-1], whole)  # streamed == in memory (+ last partial frame)
    segments = speech_segments(levels, frame_seconds)
    assert len(segments) == len(spans)
    for (start, end), (digit_start, digit_end) in zip(segments, spans):
        assert digit_start - 0.3 <= start < digit_start + 0.15
        assert digit_end - 0.15 < end <= digit_end + 0.3


# --- the ASR API ----------------------------------------------------------------------------------


def test_transcribe_batch_reports_bad_files_and_returns_the_others(tiny_asr, corpora, tmp_path):
    asr, _ = tiny_asr
    good = [corpora / "fsdd" / "recordings" / f"{name}.wav" for name in DIGITS[:3]]
    garbage = tmp_path / "garbage.wav"
    garbage.write_text("not audio")
    inputs = [good[0], tmp_path / "missing.wav", good[1], garbage, good[2]]
    transcripts = asr.transcribe_files(inputs, GREEDY)
    assert [t.error is None for t in transcripts] == [True, False, True, False, True]
    assert "missing.wav: no such file" in transcripts[1].error
    assert "garbage.wav" in transcripts[3].error
    alone = [asr.transcribe(path, GREEDY).text for path in good]
    assert [transcripts[i].text for i in (0, 2, 4)] == alone  # batching does not change results
    assert all(alone), "the tiny model should say something"
    assert all(t.duration > 0.2 and t.seconds > 0 and t.rtf > 0 for t in (transcripts[0], transcripts[2]))
    with pytest.raises(AudioError, match="missing.wav"):
        asr.transcribe([good[0], tmp_path / "missing.wav"], GREEDY)


def test_waveforms_and_silence(tiny_asr, corpora):
    asr, _ = tiny_asr
    path = corpora / "fsdd" / "recordings" / "7_theo_7.wav"
    from_file = asr.transcribe(path, GREEDY)
    digit = load_audio(path, 16000)
    assert asr.transcribe(digit, GREEDY, sample_rate=16000) == dataclasses.replace(from_file, source="<waveform>", seconds=ANY)
    quiet_noise = torch.randn(16000 * 3) * 1e-4
    assert asr.transcribe(torch.zeros(16000 * 2), GREEDY, sample_rate=16000).text == ""  # no hallucination on silence
    assert asr.transcribe(quiet_noise, GREEDY, sample_rate=16000).text == ""
    assert asr.transcribe(torch.zeros(16000 * 45), GREEDY, sample_rate=16000).segments == []  # long silence: no segments at all
    assert asr.transcribe(torch.zeros(100), GREEDY, sample_rate=16000).text == ""  # shorter than a frame
    with pytest.raises(AudioError, match="mono"):
        asr.transcribe(torch.zeros(2, 16000), sample_rate=16000)


def test_beam_search_through_the_api(tiny_asr, corpora):
    asr, _ = tiny_asr
    path = corpora / "fsdd" / "recordings" / "5_george_5.wav"
    beam = asr.transcribe(path, DecodeConfig(beam_size=3, ctc_weight=0.3, max_len_ratio=0.5)).text
    assert isinstance(beam, str) and beam
    greedy_beam = asr.transcribe(path, DecodeConfig(beam_size=1, ctc_weight=0.0, max_len_ratio=0.5))
    assert greedy_beam.text == asr.transcribe(path, GREEDY).text


def test_long_file_is_split_and_decoded_in_bounded_pieces(tiny_asr, corpora, tmp_path, monkeypatch):
    asr, _ = tiny_asr
    asr = ASR(asr.model, asr.tokenizer, asr.features, "cpu", max_segment_seconds=20.0, batch_seconds=60.0)
    names = [f"{d}_{s}_{i}" for i in range(8) for s in ("george", "jackson", "nicolas") for d in range(10)]
    clips = _digits(corpora, names[:160])
    gapped, spans = _concatenate(clips[:100], gap_seconds=0.7)
    run_on, _ = _concatenate(clips[100:], gap_seconds=0.15)  # ~50 s of speech without a real pause
    wav = np.concatenate([gapped, run_on])
    path = tmp_path / "long.wav"
    sf.write(path, wav, 8000)
    duration = len(wav) / 8000
    assert duration > 150

    reads, blocks = [], []
    real_load, real_blocks = speechs2s.asr.load_audio, speechs2s.vad.iter_audio_blocks
    monkeypatch.setattr(speechs2s.asr, "load_audio", lambda p, sr, start, end: reads.append((start, end)) or real_load(p, sr, start, end))
    monkeypatch.setattr(speechs2s.vad, "iter_audio_blocks", lambda *a, **k: (blocks.append(len(b)) or b for b in real_blocks(*a, **k)))
    segments = asr.transcribe(path, DecodeConfig(mode="ctc_greedy")).segments

    assert reads and max(end - start for start, end in reads) <= 20.0 + 1e-6  # never the whole file
    assert max(blocks) <= 60 * 8000 and len(blocks) >= 3  # levels measured block by block
    assert all(segment.end - segment.start <= 20.0 + 1e-6 for segment in segments)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(segments, segments[1:]))
    assert 0 <= segments[0].start and segments[-1].end <= duration + 1e-6
    # each separated digit is its own piece
    starts = [start for start, _ in reads]
    assert sum(any(s - 0.3 <= start <= s + 0.1 for start in starts) for s, _ in spans) >= 0.95 * len(spans)
    assert segments and all(segment.text for segment in segments)


# --- loading and the command line -----------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tiny_asr, tmp_path_factory):
    asr, config = tiny_asr
    directory = tmp_path_factory.mktemp("ckpt") / "tiny"
    options = {"name": "transformer_asr", **dataclasses.asdict(config)}
    save_checkpoint(directory, asr.model, {"task": "asr", "model": options, "features": ASR_FEATURES.to_dict()}, asr.tokenizer)
    return directory


def test_load_asr_round_trip(tiny_asr, checkpoint, corpora):
    asr, _ = tiny_asr
    loaded = speechs2s.load_asr(checkpoint, device="cpu")
    path = corpora / "fsdd" / "recordings" / "9_nicolas_9.wav"
    assert loaded.transcribe(path, GREEDY).text == asr.transcribe(path, GREEDY).text


def test_cli_transcribe(tiny_asr, checkpoint, corpora, tmp_path):
    asr, _ = tiny_asr
    good = [str(corpora / "fsdd" / "recordings" / f"{name}.wav") for name in DIGITS[:2]]
    bad = str(tmp_path / "missing.wav")
    decode = ["--model", str(checkpoint), "--beam", "2", "--ctc-weight", "0.3", "--threads", "1", "--device", "cpu"]
    expected = [t.text for t in asr.transcribe(good, DecodeConfig(beam_size=2, ctc_weight=0.3))]

    result = CliRunner().invoke(main, ["transcribe", good[0], *decode])
    assert result.exit_code == 0, result.output
    assert result.stdout == expected[0] + "\n"

    result = CliRunner().invoke(main, ["transcribe", good[0], bad, good[1], *decode])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{good[0]}\t{expected[0]}", f"{good[1]}\t{expected[1]}"]
    assert result.stderr.strip() == f"error: {bad}: no such file"

    result = CliRunner().invoke(main, ["transcribe", good[0], bad, *decode, "--json"])
    assert result.exit_code == 1
    first, second = json.loads(result.stdout)
    assert first["text"] == expected[0] and first["error"] is None and first["duration"] > 0 and first["rtf"] > 0
    assert first["segments"][0]["text"] == expected[0] and first["segments"][0]["end"] == pytest.approx(first["duration"], abs=1e-3)
    assert second["error"].endswith("no such file") and second["segments"] == []


def test_cli_evaluate(checkpoint, corpora, tmp_path):
    entries = [{"id": name, "audio": str(corpora / "fsdd" / "recordings" / f"{name}.wav"), "duration": 0.5,
                "text": ["zero", "one", "two", "three", "four"][i]} for i, name in enumerate(DIGITS)]
    entries.append({"id": "lost", "audio": str(tmp_path / "lost.wav"), "duration": 1.0, "text": "five six"})
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    report = tmp_path / "report.tsv"
    result = CliRunner().invoke(main, ["evaluate", "--manifest", str(manifest), "--model", str(checkpoint),
                                       "--beam", "1", "--ctc-weight", "0", "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert "lost.wav: no such file" in result.stderr
    rows = [line.split("\t") for line in report.read_text().splitlines()]
    assert rows[0] == ["id", "ref", "hyp", "sub", "del", "ins", "error"]
    assert [row[0] for row in rows[1:]] == [entry["id"] for entry in entries]
    assert rows[-1][2:6] == ["", "0", "2", "0"]  # the unreadable entry counts as two deleted words
    errors = sum(int(row[3]) + int(row[4]) + int(row[5]) for row in rows[1:])
    assert errors / 7 == pytest.approx(wer([row[1] for row in rows[1:]], [row[2] for row in rows[1:]]))
    assert f"WER {100 * errors / 7:.2f}%" in result.stdout and "6 utterances" in result.stdout and "1 failed" in result.stdout


# --- words, waveforms and file objects ------------------------------------------------------------


def test_words_of_real_digits_are_timed_where_they_are_spoken(corpora):
    """The bundled model (theo is held out of its training) on three digits with pauses, given as an
    8 kHz numpy array: each word comes back with a time inside its digit and a high confidence."""
    asr = speechs2s.load_asr("default", device="cpu")
    wav, spans = _concatenate(_digits(corpora, ["3_theo_3", "7_theo_7", "1_theo_1"]), gap_seconds=0.3)
    transcript = asr.transcribe(wav, sample_rate=8000)
    assert transcript.text == "three seven one"
    assert [word.text for word in transcript.words] == ["three", "seven", "one"]
    for word, (start, end) in zip(transcript.words, spans):
        assert start - 0.05 <= word.start < word.end <= end + 0.05, (word, start, end)  # inside its digit
        assert word.end >= end - 0.1  # to the end of its sound, not just the frame CTC emits it on
        assert word.confidence > 0.5
    assert asr.transcribe(wav.astype(np.float64), sample_rate=8000).words == transcript.words


def test_words_without_ctc_head_have_no_times(corpora):
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    config = TransformerASRConfig.preset("tiny", vocab_size=tokenizer.vocab_size, sos_id=tokenizer.sos_id, d_model=32,
                                         d_ff=64, encoder_layers=1, decoder_layers=1, ctc_weight=0.0)
    model = TransformerASR(config).eval()
    with torch.no_grad():
        model.output.bias[tokenizer.eos_id] -= 2.0
    transcript = ASR(model, tokenizer, ASR_FEATURES, "cpu").transcribe(corpora / "fsdd" / "recordings" / "0_theo_0.wav", GREEDY)
    assert transcript.words and " ".join(word.text for word in transcript.words) == " ".join(transcript.text.split())
    assert all(word.start is word.end is word.confidence is None for word in transcript.words)


def test_tokenizers_group_tokens_into_words():
    char = CharTokenizer()
    ids = char.encode("ab  c")
    assert char.word_positions([char.sos_id, *ids]) == [[1, 2], [4]]  # specials and spaces belong to no word
    bpe = BPETokenizer.train(["hello world", "hello there", "world of words"] * 20, vocab_size=40)
    ids = bpe.encode("hello worlds")
    assert [bpe.decode([ids[p] for p in word]) for word in bpe.word_positions(ids)] == ["hello", "worlds"]
    phonemes = PhonemeTokenizer("asr")
    ids = phonemes.encode("hi there")
    assert [len(word) for word in phonemes.word_positions(ids)] == [2, 3]  # HH AY | DH EH R


def test_waveform_and_file_object_inputs(tiny_asr, corpora):
    asr, _ = tiny_asr
    path = corpora / "fsdd" / "recordings" / "2_theo_2.wav"
    expected = asr.transcribe(path, GREEDY).text
    samples, rate = sf.read(path, dtype="int16")
    assert asr.transcribe(samples / 32768, GREEDY, sample_rate=rate).text == expected  # float64 at 8 kHz
    assert asr.transcribe(io.BytesIO(path.read_bytes()), GREEDY).text == expected
    assert asr.transcribe_files([torch.zeros(800)], GREEDY, sample_rate=8000)[0].source == "<waveform>"
    with pytest.raises(AudioError, match=r"^waveform: give its sample rate, e\.g\. transcribe\(wav, sample_rate=16000\)$"):
        asr.transcribe(samples / 32768)
    with pytest.raises(AudioError, match="sample rate"):
        asr.transcribe([path, torch.zeros(1600)])
    with pytest.raises(AudioError, match="expected float samples in \\[-1, 1\\], got int16"):
        asr.transcribe(samples, sample_rate=rate)


def test_cli_folders_stdin_and_output_files(tiny_asr, checkpoint, corpora, tmp_path, monkeypatch):
    asr, _ = tiny_asr
    recordings = corpora / "fsdd" / "recordings"
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.wav").write_bytes((recordings / "4_theo_4.wav").read_bytes())
    sf.write(folder / "sub" / "b.FLAC", sf.read(recordings / "6_theo_6.wav")[0], 8000)
    (folder / "notes.txt").write_text("not audio, not an audio suffix: skipped")
    decode = ["--model", str(checkpoint), "--beam", "1", "--ctc-weight", "0", "--device", "cpu"]
    expected = asr.transcribe([folder / "a.wav", folder / "sub" / "b.FLAC"], DecodeConfig(beam_size=1, ctc_weight=0))

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["transcribe", str(folder), *decode, "-f", "all", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{folder / 'a.wav'}\t{expected[0].text}", f"{folder / 'sub' / 'b.FLAC'}\t{expected[1].text}"]
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*"))
    assert written == ["a.json", "a.srt", "a.tsv", "a.txt", "a.vtt", "sub", *[f"sub/b.{f}" for f in ("json", "srt", "tsv", "txt", "vtt")]]
    assert (out / "sub" / "b.srt").read_text() == to_srt(expected[1])
    words = [word for segment in json.loads((out / "a.json").read_text())["segments"] for word in segment["words"]]
    assert [word["text"] for word in words] == expected[0].text.split() and all(word["start"] is not None for word in words)

    monkeypatch.chdir(tmp_path)  # --output-dir defaults to the current folder
    result = CliRunner().invoke(main, ["transcribe", "-", *decode, "-f", "vtt"], input=(folder / "a.wav").read_bytes())
    assert result.exit_code == 0, result.output
    assert result.stdout == expected[0].text + "\n"
    assert (tmp_path / "stdin.vtt").read_text() == to_vtt(dataclasses.replace(expected[0], source="<stdin>"))
