"""Transcripts as files, in the formats of Whisper's command line: txt, json, srt, vtt, tsv.

>>> write_transcript(transcript, "out/talk", ["srt", "json"])   # out/talk.srt, out/talk.json
[PosixPath('out/talk.srt'), PosixPath('out/talk.json')]

Subtitles (srt, vtt) and tsv have one cue / row per segment (at most ``max_segment_seconds`` of
speech, cut at silences); json also carries each word with its time and confidence. A transcript
without speech gives files without cues (an empty SRT, a VTT header), never a missing file.
"""
import json
from pathlib import Path

from speechs2s.asr import Transcript
from speechs2s.errors import SpeechS2SError
from speechs2s.utils import replacing, write_error_reason


def transcript_dict(transcript: Transcript) -> dict:
    """JSON-ready: file, text, error, duration, decode time, RTF, and segments with their words
    (seconds rounded to ms; a word's start, end and confidence are null when untimed)."""
    def seconds(value):
        return None if value is None else round(value, 3)

    return {"file": transcript.source, "text": transcript.text, "error": transcript.error,
            "duration": seconds(transcript.duration), "decode_seconds": seconds(transcript.seconds),
            "rtf": round(transcript.rtf, 4),
            "segments": [{"start": seconds(segment.start), "end": seconds(segment.end), "text": segment.text,
                          "words": [{"text": word.text, "start": seconds(word.start), "end": seconds(word.end),
                                     "confidence": None if word.confidence is None else round(word.confidence, 3)}
                                    for word in segment.words]}
                         for segment in transcript.segments]}


def _timestamp(seconds: float, decimal: str) -> str:
    """``hh:mm:ss<decimal>mmm``."""
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    return f"{hours:02d}:{minutes:02d}:{milliseconds // 1000:02d}{decimal}{milliseconds % 1000:03d}"


def to_txt(transcript: Transcript) -> str:
    """One line per segment."""
    return "".join(f"{segment.text}\n" for segment in transcript.segments)


def to_json(transcript: Transcript) -> str:
    return json.dumps(transcript_dict(transcript), indent=2, ensure_ascii=False) + "\n"


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues ``hh:mm:ss,mmm --> hh:mm:ss,mmm``."""
    return "\n".join(f"{number}\n{_timestamp(segment.start, ',')} --> {_timestamp(segment.end, ',')}\n{segment.text}\n"
                     for number, segment in enumerate(transcript.segments, 1))


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: a header, then cues ``hh:mm:ss.mmm --> hh:mm:ss.mmm``."""
    return "WEBVTT\n\n" + "\n".join(f"{_timestamp(segment.start, '.')} --> {_timestamp(segment.end, '.')}\n{segment.text}\n"
                                    for segment in transcript.segments)


def to_tsv(transcript: Transcript) -> str:
    """``start<TAB>end<TAB>text`` per segment, times in integer milliseconds (as Whisper's tsv)."""
    rows = [f"{round(1000 * segment.start)}\t{round(1000 * segment.end)}\t{segment.text}" for segment in transcript.segments]
    return "".join(f"{row}\n" for row in ["start\tend\ttext", *rows])


FORMATS = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}


def write_transcript(transcript: Transcript, stem: str | Path, formats: list[str]) -> list[Path]:
    """Write ``transcript`` as ``<stem>.<format>`` for each of ``formats`` (keys of :data:`FORMATS`);
    parent folders are created, each file replaced atomically. Returns the paths written; a file that
    cannot be written raises :class:`SpeechS2SError`."""
    paths = []
    for name in formats:
        path = Path(f"{stem}.{name}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replacing(path) as temporary:
                temporary.write_text(FORMATS[name](transcript), encoding="utf-8")
        except OSError as error:
            raise SpeechS2SError(f"{path}: cannot write transcript ({write_error_reason(error)})") from None
        paths.append(path)
    return paths
