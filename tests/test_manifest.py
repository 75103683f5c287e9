import json

import pytest

from speechs2s.data.manifest import read_manifest, write_manifest
from speechs2s.errors import ManifestError


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _line(**entry):
    return json.dumps({"id": "a", "audio": "a.wav", "duration": 1.5} | entry)


def test_round_trip_resolves_relative_audio(tmp_path):
    entries = [
        {"id": "u1", "audio": "wavs/u1.wav", "duration": 1.25, "text": "héllo wörld", "speaker": "s1"},
        {"id": "u2", "audio": str(tmp_path / "abs.wav"), "duration": 2, "start": 0.5, "end": 2.5},
    ]
    path = tmp_path / "sub" / "m.jsonl"
    write_manifest(path, entries)
    assert not path.with_name("m.jsonl.tmp").exists()
    read = read_manifest(path)
    assert read[0]["audio"] == str(tmp_path / "sub" / "wavs" / "u1.wav")
    assert read[0]["text"] == "héllo wörld" and read[0]["speaker"] == "s1"
    assert read[1]["audio"] == str(tmp_path / "abs.wav")
    assert (read[1]["start"], read[1]["end"]) == (0.5, 2.5)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"id": "b", "audio": ', "invalid JSON"),
        ('["not", "an", "object"]', "expected a JSON object"),
        (json.dumps({"id": "b", "audio": "b.wav"}), "missing key 'duration'"),
        (_line(id="b", duration="3"), "'duration' must be a number"),
        (_line(id="b", duration=True), "'duration' must be a number"),
        (_line(id="b", text=5), "'text' must be a string"),
        (_line(id="b", duration=0), "'duration' must be positive"),
        (_line(id="b", duration=-1.0), "'duration' must be positive"),
        (_line(id="b", start=1.0), "'start' and 'end' must be given together"),
        (_line(id="b", start=2.0, end=1.0), "segment needs 0 <= start < end"),
        (_line(), "duplicate id 'a' (first on line 1)"),
    ],
)
def test_errors_name_file_and_line(tmp_path, bad_line, message):
    path = _write_lines(tmp_path / "m.jsonl", [_line(), "", bad_line])
    with pytest.raises(ManifestError) as error:
        read_manifest(path)
    assert f"{path}:3: " in str(error.value)
    assert message in str(error.value)


def test_unreadable_manifest(tmp_path):
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "missing.jsonl")


def test_check_files_lists_all_missing(tmp_path):
    (tmp_path / "present.wav").write_bytes(b"x")
    lines = [_line(id="p", audio="present.wav")] + [_line(id=f"m{i}", audio=f"m{i}.wav") for i in range(5)]
    path = _write_lines(tmp_path / "m.jsonl", lines)
    assert len(read_manifest(path)) == 6  # no file checks by default
    with pytest.raises(ManifestError) as error:
        read_manifest(path, check_files=True)
    message = str(error.value)
    assert message.startswith(f"{path}: 5 audio file(s) not found: ")
    assert "m0.wav" in message and "m2.wav" in message and "m4.wav" not in message and message.endswith(", ...")
    assert "present.wav" not in message
