"""Importers that turn a corpus on disk into manifest entries (see :mod:`speechs2s.data.manifest`).

Each ``import_*`` returns :class:`Entries`: a list of ``{"id", "audio" (absolute path),
"duration" (s), "text", "speaker"}`` dicts sorted by id, whose ``.skipped`` lists the
``(path, reason)`` of files that could not be used; skips are also reported in one counted warning.
A corpus that is missing or malformed raises :class:`ManifestError` naming the file (and line).
"""
import inspect
import os
import re
import warnings
from pathlib import Path

from speechs2s.audio import audio_info
from speechs2s.data.manifest import write_manifest
from speechs2s.errors import AudioError, ManifestError, SpeechS2SError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
YESNO_WORDS = ("lo", "ken")  # the Hebrew words spoken in yesno: label 0 = "lo" (no), 1 = "ken" (yes)
FSDD_SPLITS = {"test": range(0, 5), "train": range(5, 50)}  # upstream split by recording index


class Entries(list):
    """Manifest entries plus ``skipped``: ``(path, reason)`` of every file left out."""

    def __init__(self, entries=(), skipped=()):
        super().__init__(entries)
        self.skipped = list(skipped)

    @property
    def hours(self) -> float:
        return sum(entry["duration"] for entry in self) / 3600


def import_ljspeech(root: str | os.PathLike) -> Entries:
    """LJSpeech layout: ``metadata.csv`` with ``id|text|normalized_text`` and ``wavs/<id>.{wav,ogg,flac}``.

    ``text`` is the normalized third column (what is spoken), or the second when it is empty.
    """
    root = Path(root)
    metadata = _require_file(root / "metadata.csv", "LJSpeech")
    audio = {path.stem: path for path in (root / "wavs").glob("*") if path.suffix in (".wav", ".ogg", ".flac")}
    items = []
    for number, line in _lines(metadata):
        columns = line.split("|")  # no CSV quoting: LJSpeech texts contain unbalanced quotes
        if len(columns) < 2 or not columns[0]:
            raise ManifestError(f"{metadata}:{number}: expected 'id|text|normalized_text', got {line!r}")
        text = columns[2] if len(columns) > 2 and columns[2].strip() else columns[1]
        path = audio.get(columns[0], root / "wavs" / f"{columns[0]}.wav")
        items.append(({"id": columns[0], "text": text.strip()}, path))
    return _with_durations(items, root)


def import_librispeech(root: str | os.PathLike) -> Entries:
    """LibriSpeech layout: ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` (``ID TEXT`` lines)
    beside ``ID.flac``; ``root`` may hold one subset or several."""
    root = Path(root)
    transcripts = sorted(root.rglob("*.trans.txt"))
    if not transcripts:
        raise ManifestError(f"{root}: no LibriSpeech *.trans.txt files found")
    items = []
    for transcript in transcripts:
        speaker = transcript.parent.parent.name
        for number, line in _lines(transcript):
            utterance, _, text = line.partition(" ")
            if not text.strip():
                raise ManifestError(f"{transcript}:{number}: expected 'ID TEXT', got {line!r}")
            entry = {"id": utterance, "text": text.strip(), "speaker": speaker}
            items.append((entry, transcript.parent / f"{utterance}.flac"))
    return _with_durations(items, root)


def import_kaldi(data_dir: str | os.PathLike) -> Entries:
    """Kaldi data dir: ``wav.scp`` (``ID PATH``; relative paths resolve against the current folder,
    as in Kaldi), optional ``text``, ``utt2spk`` and ``segments`` (``UTT REC START END``, END -1 =
    to the end). Segmented utterances get ``start``/``end`` keys (seconds in the recording).
    Piped commands (``cmd |``) and archive offsets (``file.ark:123``) are not supported.
    """
    data_dir = Path(data_dir)
    wav_scp = _require_file(data_dir / "wav.scp", "Kaldi")
    recordings = {}
    for number, (key, value) in _table(wav_scp):
        if value.endswith("|"):
            raise ManifestError(
                f"{wav_scp}:{number}: piped command {value!r} not supported; "
                "run the commands once to write audio files and list their paths instead"
            )
        if re.search(r"\.ark:\d+$", value):
            raise ManifestError(f"{wav_scp}:{number}: archive offset {value!r} not supported; list plain audio file paths")
        recordings[key] = Path(os.path.abspath(value))
    texts = _optional_table(data_dir / "text")
    speakers = _optional_table(data_dir / "utt2spk")
    if (data_dir / "segments").exists():
        entries, skipped = _kaldi_segments(data_dir / "segments", recordings, texts, speakers)
        return _finish(entries, skipped, data_dir)
    items = [(_kaldi_entry(key, texts, speakers), path) for key, path in recordings.items()]
    return _with_durations(items, data_dir)


def _kaldi_segments(segments: Path, recordings: dict[str, Path], texts: dict, speakers: dict):
    """Entries with ``start``/``end`` for the lines of a Kaldi ``segments`` file, and the skips."""
    infos, entries, skipped = {}, [], []
    for number, (utterance, value) in _table(segments):
        fields = value.split()
        try:
            recording, start, end = fields[0], float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise ManifestError(f"{segments}:{number}: expected 'UTT REC START END', got {utterance} {value!r}") from None
        if recording not in recordings:
            raise ManifestError(f"{segments}:{number}: recording {recording!r} is not in wav.scp")
        path = recordings[recording]
        if recording not in infos:
            infos[recording] = _info_or_reason(path)
        info = infos[recording]
        if isinstance(info, str):
            skipped.append((str(path), info))
            continue
        end = info.duration if end < 0 else min(end, info.duration)
        if not 0 <= start < end:
            skipped.append((f"{path} [{utterance}]", f"empty segment {start:g}..{end:g} s (recording is {info.duration:.2f} s)"))
            continue
        entry = _kaldi_entry(utterance, texts, speakers)
        entries.append(entry | {"audio": str(path), "duration": round(end - start, 6), "start": start, "end": round(end, 6)})
    return entries, skipped


def import_fsdd(root: str | os.PathLike, speakers: list[str] | None = None, split: str | None = None) -> Entries:
    """Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav`` under ``root`` or ``root/recordings``.

    ``text`` is the digit's English word ("zero".."nine"). ``speakers`` keeps only those speakers;
    ``split`` ``"test"`` keeps upstream's test files (index 0-4), ``"train"`` the rest (5-49).
    """
    root = Path(root)
    if split is not None and split not in FSDD_SPLITS:
        raise ManifestError(f"unknown FSDD split {split!r} (choose from: {', '.join(FSDD_SPLITS)})")
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    found = [(path, re.fullmatch(r"(\d)_(.+)_(\d+)", path.stem)) for path in sorted(folder.glob("*.wav"))]
    found = [(path, match) for path, match in found if match]
    if not found:
        raise ManifestError(f"{root}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) found")
    known = sorted({match[2] for _, match in found})
    unknown = set(speakers or ()) - set(known)
    if unknown:
        raise ManifestError(f"{root}: unknown FSDD speaker(s) {', '.join(sorted(unknown))} (found: {', '.join(known)})")
    items = []
    for path, match in found:
        digit, speaker, index = match.groups()
        if (speakers is None or speaker in speakers) and (split is None or int(index) in FSDD_SPLITS[split]):
            items.append(({"id": path.stem, "text": DIGIT_WORDS[int(digit)], "speaker": speaker}, path))
    return _with_durations(items, root)


def import_yesno(root: str | os.PathLike) -> Entries:
    """Kaldi yesno: 8 Hebrew words per file named by their labels, e.g. ``0_1_1_0_0_0_1_1.wav``.

    ``text`` transcribes what is spoken, with ``"ken"`` for 1 (yes) and ``"lo"`` for 0 (no), e.g.
    ``"lo ken ken lo lo lo ken ken"``.
    """
    root = Path(root)
    folder = root / "waves_yesno" if (root / "waves_yesno").is_dir() else root
    paths = [path for path in sorted(folder.glob("*.wav")) if re.fullmatch(r"[01](_[01])*", path.stem)]
    if not paths:
        raise ManifestError(f"{root}: no yesno recordings (e.g. 0_1_1_0_0_0_1_1.wav) found")
    items = [({"id": path.stem, "text": " ".join(YESNO_WORDS[int(label)] for label in path.stem.split("_"))}, path) for path in paths]
    return _with_durations(items, root)


IMPORTERS = {
    "ljspeech": import_ljspeech,
    "librispeech": import_librispeech,
    "kaldi": import_kaldi,
    "fsdd": import_fsdd,
    "yesno": import_yesno,
}


def prepare(corpus: str, source: str | os.PathLike, out: str | os.PathLike, **options) -> Entries:
    """Import ``source`` with the importer named ``corpus`` (a key of :data:`IMPORTERS`), passing
    ``options`` (e.g. ``speakers``/``split`` for FSDD), and write the manifest ``out``."""
    if corpus not in IMPORTERS:
        raise ManifestError(f"unknown corpus type {corpus!r} (choose from: {', '.join(IMPORTERS)})")
    unsupported = set(options) - set(inspect.signature(IMPORTERS[corpus]).parameters)
    if unsupported:
        raise SpeechS2SError(f"option {' and '.join(sorted(unsupported))!s} does not apply to {corpus} corpora")
    if not Path(source).is_dir():
        raise ManifestError(f"{source}: not a directory")
    entries = IMPORTERS[corpus](source, **options)
    if not entries:
        reasons = f": {entries.skipped[0][0]}: {entries.skipped[0][1]} ..." if entries.skipped else ""
        raise ManifestError(f"{source}: no usable {corpus} utterances{reasons}")
    write_manifest(out, entries)
    return entries


def _with_durations(items: list[tuple[dict, Path]], root: Path) -> Entries:
    """Add ``audio`` and ``duration`` from each file's header; unreadable files are skipped."""
    entries, skipped = [], []
    for entry, path in items:
        info = _info_or_reason(path)
        if isinstance(info, str):
            skipped.append((str(path), info))
        else:
            entries.append(entry | {"audio": os.path.abspath(path), "duration": round(info.duration, 6)})
    return _finish(entries, skipped, root)


def _info_or_reason(path: Path):
    """The file's :class:`AudioInfo`, or why it cannot be used (a string)."""
    try:
        info = audio_info(path)
    except AudioError as error:
        return str(error).removeprefix(f"{path}: ")
    return info if info.frames > 0 else "contains no audio samples"


def _finish(entries: list[dict], skipped: list[tuple[str, str]], root: Path) -> Entries:
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} utterance(s), first: {skipped[0][0]}: {skipped[0][1]}")
    return Entries(sorted(entries, key=lambda entry: entry["id"]), skipped)


def _require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise ManifestError(f"{path}: not found (expected a {layout} corpus in {path.parent})")
    return path


def _lines(path: Path):
    """``(line_number, line)`` for the non-blank lines of a UTF-8 text file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read ({error})") from None
    return [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]


def _table(path: Path, value_required: bool = True):
    """``(line_number, (key, rest))`` for a Kaldi ``KEY VALUE...`` file (whitespace-separated)."""
    rows = []
    for number, line in _lines(path):
        key, value = (line.split(maxsplit=1) + [""])[:2]
        if value_required and not value:
            raise ManifestError(f"{path}:{number}: expected 'KEY VALUE', got {line!r}")
        rows.append((number, (key, value)))
    return rows


def _optional_table(path: Path) -> dict[str, str]:
    """A Kaldi ``text``/``utt2spk`` file as a dict (an empty transcript is allowed); {} if absent."""
    return {key: value for _, (key, value) in _table(path, value_required=False)} if path.exists() else {}


def _kaldi_entry(utterance: str, texts: dict, speakers: dict) -> dict:
    entry = {"id": utterance}
    if utterance in texts:
        entry["text"] = texts[utterance]
    if utterance in speakers:
        entry["speaker"] = speakers[utterance]
    return entry
