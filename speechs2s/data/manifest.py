"""Manifests: one JSON object per line describing an utterance.

``{"id": str, "audio": str, "duration": float, "text": str, "speaker": str, "start": float, "end": float}``

``id``, ``audio`` and ``duration`` (seconds, > 0) are required. ``start``/``end`` (seconds) mark a
segment of a longer recording (Kaldi ``segments``); then ``duration == end - start``.
Relative ``audio`` paths are resolved against the manifest's folder.
"""
import json
import os
from pathlib import Path

from speechs2s.errors import ManifestError

REQUIRED = {"id": str, "audio": str, "duration": (int, float)}
OPTIONAL = {"text": str, "speaker": str, "start": (int, float), "end": (int, float)}
_TYPE_NAMES = {str: "a string", (int, float): "a number"}


def read_manifest(path: str | os.PathLike, check_files: bool = False) -> list[dict]:
    """Read and validate a JSONL manifest; ``audio`` paths come back absolute.

    Raises :class:`ManifestError` naming the file and line for bad JSON, a missing key, a wrong
    type, a duplicate id or a non-positive duration; with ``check_files`` also one error listing
    every audio file that does not exist.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read manifest ({error})") from None
    entries, seen = [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ManifestError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
        _validate(entry, where)
        if entry["id"] in seen:
            raise ManifestError(f"{where}: duplicate id {entry['id']!r} (first on line {seen[entry['id']]})")
        seen[entry["id"]] = number
        entry["audio"] = os.path.normpath(path.parent.absolute() / entry["audio"])
        entries.append(entry)
    if check_files:
        _check_files(entries, path)
    return entries


def write_manifest(path: str | os.PathLike, entries: list[dict]) -> None:
    """Write entries as JSONL (UTF-8, one object per line), replacing ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        for entry in entries:
            file.write(json.dumps(entry, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def _validate(entry, where: str) -> None:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    for key in REQUIRED:
        if key not in entry:
            raise ManifestError(f"{where}: missing key {key!r}")
    for key, kind in (REQUIRED | OPTIONAL).items():
        if key in entry and (not isinstance(entry[key], kind) or isinstance(entry[key], bool)):
            raise ManifestError(f"{where}: {key!r} must be {_TYPE_NAMES[kind]}, got {entry[key]!r}")
    if not entry["duration"] > 0:
        raise ManifestError(f"{where}: 'duration' must be positive, got {entry['duration']!r}")
    if ("start" in entry) != ("end" in entry):
        raise ManifestError(f"{where}: 'start' and 'end' must be given together")
    if "start" in entry and not 0 <= entry["start"] < entry["end"]:
        raise ManifestError(f"{where}: segment needs 0 <= start < end, got {entry['start']}..{entry['end']}")


def _check_files(entries: list[dict], path: Path) -> None:
    missing = sorted({entry["audio"] for entry in entries if not os.path.isfile(entry["audio"])})
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ManifestError(f"{path}: {len(missing)} audio file(s) not found: {shown}")
