"""Hotwords (contextual biasing by a prefix trie in beam search): the trie's scores, the search on tiny
real models, the Python API and the command line."""
import json

import pytest
import torch
from click.testing import CliRunner

from speechs2s.cli import main
from speechs2s.decode.asr import DecodeConfig, beam_search
from speechs2s.decode.hotwords import ContextGraph, build_context_graph, parse_hotwords, read_hotwords_file
from speechs2s.errors import ConfigError
from speechs2s.text.tokenizers import CharTokenizer
from test_asr_api import DIGITS, checkpoint, tiny_asr  # noqa: F401 (fixtures)
from test_decode_asr import EOS, _batch, tiny_model


def test_only_completed_phrases_at_a_word_boundary_keep_their_bonus():
    word_starts = torch.zeros(10, dtype=torch.bool)
    word_starts[[3, 6, 7]] = True
    graph = ContextGraph([[3, 4, 5], [3, 4], [6, 8]], 10, bonus=1.0, eos_id=2, word_starts=word_starts)
    score = graph.path_score
    # the first token of a phrase earns nothing; each later one earns the bonus
    assert score([3, 4, 5]) == 2.0 and score([7, 3, 4, 5, 7]) == 2.0 and score([6, 8]) == 1.0
    assert score([3, 4]) == 1.0 and score([3, 4, 7]) == 1.0  # the shorter phrase
    assert score([3]) == 0.0 and score([3, 7]) == 0.0 and score([6, 9]) == 0.0  # failed matches are taken back
    assert score([3, 4, 8]) == 0.0 and score([3, 4, 5, 8]) == 0.0  # a phrase inside a longer word earns nothing
    assert score([3, 4, 5, 3, 4, 5]) == 4.0  # every completed occurrence
    assert score([3, 4, 6, 8]) == 2.0  # "34" kept when the next word starts another phrase


def test_parse_and_read_hotwords(tmp_path):
    assert parse_hotwords(" Nguyen, Kubernetes ,,\nOyelaran\n") == ["Nguyen", "Kubernetes", "Oyelaran"]
    path = tmp_path / "words.txt"
    path.write_text("# names\nDoctor Oyelaran\nReykjavik, Tbilisi\n\n")
    assert read_hotwords_file(path) == ["Doctor Oyelaran", "Reykjavik", "Tbilisi"]
    path.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="no hotword phrases"):
        read_hotwords_file(path)
    with pytest.raises(ConfigError, match="no such file"):
        read_hotwords_file(tmp_path / "missing.txt")
    assert build_context_graph([], CharTokenizer()) is None
    with pytest.raises(ConfigError, match="nothing left"):
        build_context_graph(["!!"], CharTokenizer())


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_bonus_pulls_the_hypothesis_towards_a_phrase_and_an_empty_list_changes_nothing(kind):
    model = tiny_model(kind)
    features, lengths = _batch()
    config = DecodeConfig(beam_size=4, ctc_weight=0.3)
    enc, enc_lengths = model.encode(features, lengths)
    with torch.no_grad():
        plain = [hyps[0].tokens for hyps in beam_search(model, enc, enc_lengths, config, EOS)]
        empty = ContextGraph([], 6, bonus=5.0, eos_id=EOS)
        assert [hyps[0].tokens for hyps in beam_search(model, enc, enc_lengths, config, EOS, context=empty)] == plain
        phrase = [3, 1, 2]
        assert all(not _contains(tokens, phrase) for tokens in plain)
        graph = ContextGraph([phrase], 6, bonus=8.0, eos_id=EOS, min_ctc_gain=float("-inf"))
        biased = [hyps[0].tokens for hyps in beam_search(model, enc, enc_lengths, config, EOS, context=graph)]
    assert all(_contains(tokens, phrase) for tokens in biased), (plain, biased)


def test_reserved_beams_keep_a_partial_match_from_displacing_the_unbiased_hypotheses():
    model = tiny_model("lstm")
    features, lengths = _batch()
    config = DecodeConfig(beam_size=4, ctc_weight=0.3, max_len_ratio=0.5)
    unreachable = [1, 2, 3, 4] * 20  # longer than any hypothesis may be: every partial match is taken back
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        plain = [hyps[0].tokens for hyps in beam_search(model, enc, enc_lengths, config, EOS)]

        def best(reserved):
            graph = ContextGraph([unreachable], 6, bonus=8.0, eos_id=EOS, reserved_beams=reserved)
            return [hyps[0].tokens for hyps in beam_search(model, enc, enc_lengths, config, EOS, context=graph)]

        assert best(0) != plain  # ranked with the bonus, partial matches push the best hypothesis out
        assert best(4) == plain  # ranked without it, the beam_size rows are the unbiased search's
    with pytest.raises(ConfigError, match="reserved_beams"):
        ContextGraph([[1]], 6, reserved_beams=-1)


def _contains(tokens, phrase):
    return any(tokens[i : i + len(phrase)] == phrase for i in range(len(tokens)))


def test_api_hotwords_per_call_and_per_recogniser(tiny_asr, corpora):  # noqa: F811
    asr, _ = tiny_asr
    path = corpora / "fsdd" / "recordings" / f"{DIGITS[0]}.wav"
    beam = DecodeConfig(beam_size=3, ctc_weight=0.3, max_len_ratio=0.5)
    plain = asr.transcribe(path, beam).text
    assert asr.transcribe(path, beam, hotwords=[]).text == plain
    asr.set_hotwords(["bux"], bonus=30.0)
    asr.context.min_ctc_gain = float("-inf")  # the untrained model's CTC finds nothing plausible
    try:
        assert "bux" in asr.transcribe(path, beam).text and "bux" not in plain
        assert asr.transcribe(path, beam, hotwords=[]).text == plain
        with pytest.raises(ConfigError, match="beam search only"):
            asr.transcribe(path, DecodeConfig(mode="greedy"))
    finally:
        asr.set_hotwords(None)
    assert asr.transcribe(path, beam).text == plain


def test_cli_hotwords_options(checkpoint, corpora, tmp_path):  # noqa: F811
    audio = str(corpora / "fsdd" / "recordings" / f"{DIGITS[0]}.wav")
    decode = ["--model", str(checkpoint), "--beam", "2", "--threads", "1", "--device", "cpu"]
    plain = CliRunner().invoke(main, ["transcribe", audio, *decode])
    assert plain.exit_code == 0, plain.output
    words = tmp_path / "words.txt"
    words.write_text("Nguyen\nKubernetes\n")
    result = CliRunner().invoke(main, ["transcribe", audio, *decode, "--hotwords", "Oyelaran, Reykjavik",
                                       "--hotwords-file", str(words), "--hotword-bonus", "0"])
    assert result.exit_code == 0 and result.stdout == plain.stdout  # bonus 0 changes nothing
    for args, message in [(["--hotwords-file", str(tmp_path / "missing.txt")], "cannot read hotwords (no such file)"),
                          (["--hotwords", " , "], "--hotwords: no phrases given")]:
        result = CliRunner().invoke(main, ["transcribe", audio, *decode, *args])
        assert result.exit_code == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
        assert message in result.stderr
    words.write_text("# only a comment\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": audio, "duration": 0.5, "text": "zero"}) + "\n")
    result = CliRunner().invoke(main, ["evaluate", "--manifest", str(manifest), *decode, "--hotwords-file", str(words)])
    assert result.exit_code == 1 and result.stderr == f"error: {words}: no hotword phrases in this file (one per line)\n"
    result = CliRunner().invoke(main, ["evaluate", "--manifest", str(manifest), *decode, "--hotwords", "zero"])
    assert result.exit_code == 0 and "WER" in result.stdout


def test_cli_defaults_are_the_library_defaults():
    from speechs2s import cli
    from speechs2s.asr import DEFAULT_ENDPOINT_SILENCE
    from speechs2s.decode.hotwords import DEFAULT_BONUS

    assert cli.DEFAULT_HOTWORD_BONUS == DEFAULT_BONUS  # cli.py restates them so that --help does not import torch
    assert cli.DEFAULT_BEAM == DecodeConfig().beam_size
    assert cli.DEFAULT_ENDPOINT_SILENCE == DEFAULT_ENDPOINT_SILENCE
