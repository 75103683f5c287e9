import json

import pytest

from speechs2s.asr import Segment, Transcript, Word
from speechs2s.errors import SpeechS2SError
from speechs2s.transcript_writers import FORMATS, to_json, to_srt, to_tsv, to_txt, to_vtt, write_transcript

TRANSCRIPT = Transcript(
    "talk.wav", "hello world one hour later",
    [Segment(0.42, 2.5, "hello world", [Word("hello", 0.46, 0.81, 0.93), Word("world", 1.2, 1.5, 0.874)]),
     Segment(3725.0, 3727.25, "one hour later", [Word("one"), Word("hour"), Word("later")])],  # untimed words
    duration=3728.0, seconds=37.28)


def test_subtitles_and_tables():
    assert to_txt(TRANSCRIPT) == "hello world\none hour later\n"
    assert to_srt(TRANSCRIPT) == ("1\n00:00:00,420 --> 00:00:02,500\nhello world\n\n"
                                  "2\n01:02:05,000 --> 01:02:07,250\none hour later\n")
    assert to_vtt(TRANSCRIPT) == ("WEBVTT\n\n00:00:00.420 --> 00:00:02.500\nhello world\n\n"
                                  "01:02:05.000 --> 01:02:07.250\none hour later\n")
    assert to_tsv(TRANSCRIPT) == "start\tend\ttext\n420\t2500\thello world\n3725000\t3727250\tone hour later\n"


def test_json_has_words_with_times_and_confidence():
    result = json.loads(to_json(TRANSCRIPT))
    assert result["text"] == TRANSCRIPT.text and result["rtf"] == 0.01 and result["error"] is None
    assert result["segments"][0]["words"][1] == {"text": "world", "start": 1.2, "end": 1.5, "confidence": 0.874}
    assert result["segments"][1]["words"][0] == {"text": "one", "start": None, "end": None, "confidence": None}


def test_silent_file_gives_files_without_cues(tmp_path):
    silent = Transcript("silence.wav", duration=3.0)
    paths = write_transcript(silent, tmp_path / "deep" / "silence", list(FORMATS))
    assert [path.name for path in paths] == [f"silence.{name}" for name in FORMATS]
    texts = {path.suffix: path.read_text() for path in paths}
    assert texts[".srt"] == texts[".txt"] == "" and texts[".vtt"] == "WEBVTT\n\n" and texts[".tsv"] == "start\tend\ttext\n"
    assert json.loads(texts[".json"])["segments"] == []
    assert sorted(path.name for path in (tmp_path / "deep").iterdir()) == sorted(path.name for path in paths)  # no temporaries


def test_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SpeechS2SError, match=r"file/talk\.txt: cannot write transcript \(.+\)$"):
        write_transcript(TRANSCRIPT, tmp_path / "file" / "talk", ["txt"])
