"""Fetch and unpack corpora: resumable, checksum-verified downloads and archive extraction that
refuses members escaping the target folder.

    path = download("https://www.openslr.org/resources/12/dev-clean.tar.gz", "downloads/", sha256="76f8...")
    extract(path, "corpora/")   # -> corpora/LibriSpeech/dev-clean/...; a second call is a no-op

Both are idempotent, so a recipe stage that calls them can simply be run again.
"""
import hashlib
import os
import posixpath
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tqdm import tqdm

from speechs2s.errors import SpeechS2SError

CHUNK_BYTES = 1 << 20


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    md5: str | None = None,
    resume: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``: a file path, or a folder (one that exists, or any path ending
    in ``/``) to put the URL's file name in; returns the file's path.

    Bytes go to ``<dest>.part`` first; an interrupted download resumes from it with an HTTP Range
    request (``resume=False`` starts over). The file is renamed to ``dest`` only once complete and,
    when ``sha256`` or ``md5`` is given, verified: a mismatch removes the partial file and raises
    :class:`SpeechS2SError`. An existing ``dest`` is kept (and verified when a checksum is given).
    """
    is_folder = str(dest).endswith(("/", os.sep)) or Path(dest).is_dir()
    dest = Path(dest) / PurePosixPath(urlparse(url).path).name if is_folder else Path(dest)
    algorithm, expected = _checksum_spec(sha256, md5)
    if dest.exists():
        if expected is not None:
            actual = _hasher_of(dest, algorithm).hexdigest()
            if actual != expected:
                raise SpeechS2SError(
                    f"{dest}: {algorithm} mismatch (expected {expected}, got {actual}); delete it to download again"
                )
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    hasher = _hasher_of(part, algorithm) if part.exists() else hashlib.new(algorithm)
    offset = part.stat().st_size if part.exists() else 0

    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: nothing left past `offset`, the partial file is complete
            raise SpeechS2SError(f"{url}: HTTP {error.code} {error.reason}") from None
        response = None
    except (urllib.error.URLError, OSError) as error:
        raise SpeechS2SError(f"{url}: {getattr(error, 'reason', error)}") from None

    if response is not None:
        with response:
            if offset and response.status != 206:  # the server ignored the Range: start over
                offset, hasher = 0, hashlib.new(algorithm)
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            try:
                with open(part, "ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, disable=None,  # no bar unless stderr is a terminal: logs stay readable
                ) as progress:
                    while chunk := response.read(CHUNK_BYTES):
                        out.write(chunk)
                        hasher.update(chunk)
                        progress.update(len(chunk))
            except OSError as error:  # connection dropped: keep the partial file for resuming
                raise SpeechS2SError(f"{url}: download interrupted ({error}); run again to resume") from None
            if total is not None and part.stat().st_size != total:
                raise SpeechS2SError(
                    f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume"
                )

    if expected is not None and hasher.hexdigest() != expected:
        part.unlink()
        raise SpeechS2SError(
            f"{url}: {algorithm} mismatch (expected {expected}, got {hasher.hexdigest()}); removed {part}"
        )
    os.replace(part, dest)
    return dest


def extract(archive: str | Path, target_dir: str | Path) -> Path:
    """Unpack a ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip`` into ``target_dir``.

    Every member is checked before anything is written: absolute paths, ``..`` escapes, links
    pointing outside ``target_dir``, paths or links through a symlink member (a chain that could
    escape once the first link exists) and device files raise :class:`SpeechS2SError` naming the
    member. Tar members are then written with tarfile's ``data`` filter where Python has it
    (3.10.12+, 3.11.4+), which checks them once more as they are written.
    A marker file ``.<archive name>.extracted`` in ``target_dir`` makes a second call a no-op.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    marker = target_dir / f".{archive.name}.extracted"
    if marker.exists():
        return target_dir
    if not archive.is_file():
        raise SpeechS2SError(f"{archive}: archive not found")
    target_dir.mkdir(parents=True, exist_ok=True)
    root = target_dir.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise SpeechS2SError(f"{archive}: refusing symlink member {info.filename!r}")
                _check_inside(root, info.filename, archive)
            zf.extractall(root)
    else:
        try:
            tar = tarfile.open(archive)
        except tarfile.TarError as error:
            raise SpeechS2SError(f"{archive}: not a tar or zip archive ({error})") from None
        with tar:
            members = tar.getmembers()
            symlinks = {posixpath.normpath(member.name.lstrip("/")) for member in members if member.issym()}
            for member in members:
                _check_tar_member(root, member, archive, symlinks)
            # Older Pythons lack extraction filters: the checks above are then the only ones.
            filter_arg = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(root, members=members, **filter_arg)
    marker.touch()
    return target_dir


def _check_tar_member(root: Path, member: tarfile.TarInfo, archive: Path, symlinks: set[str]) -> None:
    """Refuse ``member`` unless it and its link target stay inside ``root`` without passing through
    any of the archive's ``symlinks`` (member names, normalised)."""
    _check_inside(root, member.name, archive)
    _check_not_through_symlink(member.name, symlinks, archive, member.name)
    if member.issym() or member.islnk():
        target = str(PurePosixPath(member.name).parent / member.linkname) if member.issym() else member.linkname
        _check_inside(root, target, archive, member.name)
        _check_not_through_symlink(target, symlinks, archive, member.name, link=True)
    elif not (member.isfile() or member.isdir()):
        raise SpeechS2SError(f"{archive}: refusing special file member {member.name!r}")


def _check_not_through_symlink(path: str, symlinks: set[str], archive: Path, member: str, link=False) -> None:
    """Raise if ``path`` (the name of ``member``, or with ``link`` its link target) walks through a
    symlink member: once that link is written, it decides where the rest of the path goes (``l -> .``
    then ``l/..`` is outside). A link target may not be a symlink member either (a chain)."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    walked = []
    for index, part in enumerate(parts):
        if part == "..":
            walked = walked[:-1]
            continue
        walked.append(part)
        if "/".join(walked) in symlinks and (link or index < len(parts) - 1):
            what = f"member {member!r} links to {path!r}" if link else f"member {member!r}"
            raise SpeechS2SError(f"{archive}: refusing {what}: goes through symlink member {'/'.join(walked)!r}")


def _check_inside(root: Path, name: str, archive: Path, member: str | None = None) -> None:
    """Resolve ``name`` under ``root``; raise unless it stays inside. ``member`` names a link's owner."""
    what = f"member {member!r} links to {name!r}" if member else f"member {name!r}"
    if PurePosixPath(name).is_absolute() or Path(name).is_absolute():
        raise SpeechS2SError(f"{archive}: refusing {what}: absolute path")
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise SpeechS2SError(f"{archive}: refusing {what}: outside {root}")


def _checksum_spec(sha256: str | None, md5: str | None) -> tuple[str, str | None]:
    if sha256 and md5:
        raise SpeechS2SError("give either sha256 or md5, not both")
    if md5:
        return "md5", md5.lower()
    return "sha256", sha256.lower() if sha256 else None


def _hasher_of(path: Path, algorithm: str):
    """A ``hashlib`` object fed with the bytes of ``path`` (so far)."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher
