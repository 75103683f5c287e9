import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from speechs2s.cli import main
from speechs2s.data.corpora import import_fsdd, import_kaldi, import_librispeech, import_ljspeech, import_yesno, prepare
from speechs2s.data.manifest import read_manifest
from speechs2s.errors import ManifestError


def _tone(path, seconds, sample_rate=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sample_rate, format=fmt)
    return path


def test_ljspeech_wav_and_ogg_with_skips(tmp_path):
    _tone(tmp_path / "wavs" / "LJ001-0001.wav", 1.0)
    _tone(tmp_path / "wavs" / "LJ001-0002.ogg", 0.5, 22050)
    (tmp_path / "wavs" / "LJ001-0003.wav").write_bytes(b"not audio at all")
    (tmp_path / "metadata.csv").write_text(
        'LJ001-0001|Dr. Smith "quoted|Doctor Smith "quoted\n'
        "LJ001-0002|In 1850 it was|\n"  # empty normalized column: falls back to the text column
        "LJ001-0003|corrupt|corrupt\n"
        "LJ001-0004|missing|missing\n",
        encoding="utf-8",
    )
    with pytest.warns(UserWarning, match="skipped 2 utterance"):
        entries = import_ljspeech(tmp_path)
    assert [entry["id"] for entry in entries] == ["LJ001-0001", "LJ001-0002"]
    assert entries[0]["text"] == 'Doctor Smith "quoted'
    assert entries[1]["text"] == "In 1850 it was"
    assert entries[1]["audio"] == str(tmp_path / "wavs" / "LJ001-0002.ogg")
    assert entries[0]["duration"] == pytest.approx(1.0) and entries[1]["duration"] == pytest.approx(0.5)
    assert sorted(path.rsplit("/", 1)[1] for path, _ in entries.skipped) == ["LJ001-0003.wav", "LJ001-0004.wav"]
    assert entries.hours == pytest.approx(1.5 / 3600)


def test_ljspeech_bad_metadata_line(tmp_path):
    (tmp_path / "metadata.csv").write_text("LJ1|ok|ok\njust-an-id\n")
    with pytest.raises(ManifestError, match=r"metadata.csv:2: expected 'id\|text"):
        import_ljspeech(tmp_path)
    with pytest.raises(ManifestError, match="expected a LJSpeech corpus"):
        import_ljspeech(tmp_path / "nowhere")


def test_librispeech(tmp_path):
    for speaker, chapter, n in [("19", "198", 2), ("26", "495", 1)]:
        folder = tmp_path / "dev-clean" / speaker / chapter
        lines = []
        for i in range(n):
            utterance = f"{speaker}-{chapter}-{i:04d}"
            _tone(folder / f"{utterance}.flac", 0.25 * (i + 1))
            lines.append(f"{utterance} HELLO WORLD NUMBER {i}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    entries = import_librispeech(tmp_path)
    assert [entry["id"] for entry in entries] == ["19-198-0000", "19-198-0001", "26-495-0000"]
    assert entries[1] == {
        "id": "19-198-0001",
        "text": "HELLO WORLD NUMBER 1",
        "speaker": "19",
        "audio": str(tmp_path / "dev-clean" / "19" / "198" / "19-198-0001.flac"),
        "duration": 0.5,
    }
    assert entries.skipped == []


def _kaldi_dir(tmp_path, segments=None):
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    _tone(tmp_path / "rec1.wav", 3.0)
    _tone(tmp_path / "rec2.wav", 1.0)
    (data / "wav.scp").write_text(f"rec1 {tmp_path / 'rec1.wav'}\nrec2\t{tmp_path / 'rec2.wav'}\n")
    if segments:
        (data / "segments").write_text(segments)
    return data


def test_kaldi_plain(tmp_path):
    data = _kaldi_dir(tmp_path)
    (data / "text").write_text("rec1 hello there\nrec2\n")  # an empty transcript is allowed
    (data / "utt2spk").write_text("rec1 spk1\nrec2 spk2\n")
    entries = import_kaldi(data)
    assert entries == [
        {"id": "rec1", "text": "hello there", "speaker": "spk1", "audio": str(tmp_path / "rec1.wav"), "duration": 3.0},
        {"id": "rec2", "text": "", "speaker": "spk2", "audio": str(tmp_path / "rec2.wav"), "duration": 1.0},
    ]


def test_kaldi_segments(tmp_path):
    data = _kaldi_dir(tmp_path, "a rec1 0.0 1.2\nb rec1 1.2 -1\nc rec2 0.5 4.0\nd rec2 2.0 3.0\n")
    (data / "text").write_text("a first part\nb second part\nc clipped at the end\nd beyond the end\n")
    with pytest.warns(UserWarning, match="skipped 1 utterance"):
        entries = import_kaldi(data)
    by_id = {entry["id"]: entry for entry in entries}
    assert sorted(by_id) == ["a", "b", "c"]
    assert (by_id["a"]["start"], by_id["a"]["end"], by_id["a"]["duration"]) == (0.0, 1.2, 1.2)
    assert (by_id["b"]["start"], by_id["b"]["end"]) == (1.2, 3.0) and by_id["b"]["duration"] == pytest.approx(1.8)
    assert by_id["c"]["end"] == 1.0 and by_id["c"]["duration"] == 0.5
    assert "empty segment" in entries.skipped[0][1]


def test_kaldi_refuses_pipes_and_bad_lines(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "wav.scp").write_text("a /x/a.wav\nb sox /x/b.wav -t wav - |\n")
    with pytest.raises(ManifestError, match=r"wav.scp:2: piped command .* not supported"):
        import_kaldi(data)
    (data / "wav.scp").write_text("a /x/feats.ark:1234\n")
    with pytest.raises(ManifestError, match="wav.scp:1: archive offset"):
        import_kaldi(data)
    (data / "wav.scp").write_text("a /x/a.wav\n")
    (data / "segments").write_text("u1 a 0 1\nu2 zzz 0 1\n")
    with pytest.raises(ManifestError, match="segments:2: recording 'zzz' is not in"):
        import_kaldi(data)
    (data / "segments").write_text("u1 a zero one\n")
    with pytest.raises(ManifestError, match="segments:1: expected 'UTT REC START END'"):
        import_kaldi(data)


def test_fsdd_fixture_and_options(tmp_path):
    for name in ["3_alice_0", "3_alice_7", "9_bob_4", "9_bob_12", "junk"]:
        _tone(tmp_path / "recordings" / f"{name}.wav", 0.4, 8000)
    entries = import_fsdd(tmp_path)
    assert [(e["id"], e["text"], e["speaker"]) for e in entries] == [
        ("3_alice_0", "three", "alice"), ("3_alice_7", "three", "alice"), ("9_bob_12", "nine", "bob"), ("9_bob_4", "nine", "bob")
    ]
    assert [e["id"] for e in import_fsdd(tmp_path, split="test")] == ["3_alice_0", "9_bob_4"]
    assert [e["id"] for e in import_fsdd(tmp_path, speakers=["bob"], split="train")] == ["9_bob_12"]
    with pytest.raises(ManifestError, match=r"unknown FSDD speaker\(s\) carol \(found: alice, bob\)"):
        import_fsdd(tmp_path, speakers=["carol"])
    with pytest.raises(ManifestError, match="unknown FSDD split"):
        import_fsdd(tmp_path, split="dev")


def test_real_fsdd_and_yesno(corpora):
    entries = import_fsdd(corpora / "fsdd", speakers=["theo"], split="test")
    assert len(entries) == 50 and {e["speaker"] for e in entries} == {"theo"}
    assert all(0.1 < e["duration"] < 2.0 for e in entries)
    yesno = import_yesno(corpora / "yesno")
    assert len(yesno) == 60
    first = next(e for e in yesno if e["id"] == "0_0_1_0_0_0_1_0")
    assert first["text"] == "lo lo ken lo lo lo ken lo"


def test_prepare_cli(tmp_path, corpora):
    out = tmp_path / "fsdd.jsonl"
    result = CliRunner().invoke(main, ["prepare", "fsdd", str(corpora / "fsdd"), str(out), "--speakers", "george,theo", "--split", "test"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote 100 entries (0.01 h) to {out}")
    entries = read_manifest(out, check_files=True)
    assert len(entries) == 100 and json.loads(out.read_text().splitlines()[0])["id"] == "0_george_0"

    result = CliRunner().invoke(main, ["prepare", "yesno", str(corpora / "yesno"), str(out), "--split", "test"])
    assert result.exit_code == 1 and "does not apply to yesno" in result.output


def test_prepare_reports_skips(tmp_path):
    _tone(tmp_path / "src" / "wavs" / "a.wav", 0.5)
    (tmp_path / "src" / "wavs" / "b.wav").write_bytes(b"")
    (tmp_path / "src" / "metadata.csv").write_text("a|x|x\nb|y|y\n")
    result = CliRunner().invoke(main, ["prepare", "ljspeech", str(tmp_path / "src"), str(tmp_path / "m.jsonl")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 entries" in result.output and "skipped 1 utterance(s):" in result.output and "b.wav: empty file" in result.output
    (tmp_path / "src" / "wavs" / "a.wav").unlink()
    with pytest.raises(ManifestError, match="no usable ljspeech utterances"), pytest.warns(UserWarning, match="skipped 2"):
        prepare("ljspeech", tmp_path / "src", tmp_path / "m.jsonl")
