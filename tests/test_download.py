"""speechs2s.download against a loopback HTTP server (Range-capable) and hand-made malicious archives."""
import hashlib
import io
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from speechs2s.download import download, extract
from speechs2s.errors import SpeechS2SError


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support (http.server has none); counts requests."""

    ranges_seen: list = []

    def send_head(self):
        range_header = self.headers.get("Range")
        if not range_header:
            return super().send_head()
        path = Path(self.translate_path(self.path))
        start = int(range_header.removeprefix("bytes=").split("-")[0])
        size = path.stat().st_size
        self.ranges_seen.append(start)
        if start >= size:
            self.send_error(416)
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return f

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(serve_dir, base_url) of a loopback server for the duration of one test."""
    root = tmp_path / "served"
    root.mkdir()
    RangeHandler.ranges_seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_tarball(path: Path, files: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def add_link(path: Path, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    add_links(path, (name, target, kind))


def add_links(path: Path, *links: tuple, then: dict[str, bytes] | None = None) -> None:
    """A tar of ``corpus/ok.txt``, the ``(name, target[, kind])`` links, then the files ``then``."""
    with tarfile.open(path, "w") as tar:
        tar.addfile(tarfile.TarInfo("corpus/ok.txt"), io.BytesIO(b""))
        for name, target, *kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind[0] if kind else tarfile.SYMTYPE, target
            tar.addfile(info)
        for name, data in (then or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_download_verify_extract_and_skip(server, tmp_path):
    root, url = server
    payload = make_tarball(root / "tiny.tar.gz", {"corpus/a.txt": b"hello", "corpus/sub/b.txt": b"x" * 5000})
    dest = download(f"{url}/tiny.tar.gz", f"{tmp_path}/dl/", sha256=hashlib.sha256(payload).hexdigest())
    assert dest == tmp_path / "dl" / "tiny.tar.gz" and dest.read_bytes() == payload
    assert not (tmp_path / "dl" / "tiny.tar.gz.part").exists()

    out = extract(dest, tmp_path / "out")
    assert (out / "corpus" / "a.txt").read_bytes() == b"hello"
    assert (out / "corpus" / "sub" / "b.txt").stat().st_size == 5000

    # Re-running both is a no-op: no request, no re-extraction (a deleted file stays deleted).
    (root / "tiny.tar.gz").unlink()
    (out / "corpus" / "a.txt").unlink()
    assert download(f"{url}/tiny.tar.gz", dest, md5=hashlib.md5(payload).hexdigest()) == dest
    extract(dest, out)
    assert not (out / "corpus" / "a.txt").exists()


def test_resume_after_truncated_partial(server, tmp_path):
    root, url = server
    payload = bytes(range(256)) * 4000  # ~1 MB
    (root / "big.bin").write_bytes(payload)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(payload[:300_001])

    download(f"{url}/big.bin", dest, sha256=hashlib.sha256(payload).hexdigest())

    assert RangeHandler.ranges_seen == [300_001]  # only the rest was fetched
    assert dest.read_bytes() == payload


def test_complete_partial_is_verified_not_refetched(server, tmp_path):
    root, url = server
    (root / "f.bin").write_bytes(b"abc")
    (tmp_path / "f.bin.part").write_bytes(b"abc")
    download(f"{url}/f.bin", tmp_path / "f.bin", md5=hashlib.md5(b"abc").hexdigest())
    assert RangeHandler.ranges_seen == [3] and (tmp_path / "f.bin").read_bytes() == b"abc"


def test_checksum_mismatch_removes_partial(server, tmp_path):
    root, url = server
    (root / "f.bin").write_bytes(b"corrupted bytes")
    with pytest.raises(SpeechS2SError, match="sha256 mismatch.*removed"):
        download(f"{url}/f.bin", tmp_path / "f.bin", sha256="0" * 64)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_http_error_is_one_clear_line(server, tmp_path):
    _, url = server
    with pytest.raises(SpeechS2SError, match=r"missing\.tar\.gz: HTTP 404"):
        download(f"{url}/missing.tar.gz", tmp_path / "x.tar.gz")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda p: make_tarball(p, {"corpus/ok.txt": b"", "../escape.txt": b"evil"}), "'../escape.txt'.*outside"),
        (lambda p: make_tarball(p, {"corpus/../../escape.txt": b"evil"}), "outside"),
        (lambda p: make_tarball(p, {"/tmp/abs.txt": b"evil"}), "'/tmp/abs.txt'.*absolute"),
        (lambda p: add_link(p, "corpus/link", "../../etc/passwd"), "'corpus/link' links to.*outside"),
        (lambda p: add_link(p, "corpus/link", "/etc/passwd"), "'corpus/link'.*absolute"),
        (lambda p: add_link(p, "corpus/hard", "../outside", tarfile.LNKTYPE), "'corpus/hard'.*outside"),
        # Chains: each link stays inside on its own, but once `up` exists `up/..` is the parent of the target.
        (lambda p: add_links(p, ("up", "."), ("corpus/out", "../up/..")),
         "'corpus/out' links to 'corpus/../up/..': goes through symlink member 'up'"),
        (lambda p: add_links(p, ("corpus/up", ".."), then={"corpus/up/../escape.txt": b"evil"}),
         "'corpus/up/../escape.txt': goes through symlink member 'corpus/up'"),
        (lambda p: add_links(p, ("corpus/a", "ok.txt"), ("corpus/b", "a")), "'corpus/b'.*symlink member 'corpus/a'"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out",
         "symlink-chain-out", "file-through-symlink", "symlink-to-symlink"],
)
@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "no-filter"])
def test_malicious_tar_refused_before_writing(tmp_path, monkeypatch, build, message, data_filter):
    if not data_filter:  # Pythons before 3.10.12 / 3.11.4: the project's own checks alone
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tmp_path / "evil.tar"
    build(archive)
    target = tmp_path / "target" / "inner"
    with pytest.raises(SpeechS2SError, match=message) as refusal:
        extract(archive, target)
    assert "\n" not in str(refusal.value)  # one line
    assert list(target.iterdir()) == []  # nothing written, not even the harmless member
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "target" / "escape.txt").exists()


@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "no-filter"])
def test_symlink_inside_target_is_allowed(tmp_path, monkeypatch, data_filter):
    if not data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tmp_path / "ok.tar"
    add_links(archive, ("corpus/link", "ok.txt"), ("corpus/hard", "corpus/ok.txt", tarfile.LNKTYPE))
    extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "corpus" / "link").is_symlink()
    assert (tmp_path / "out" / "corpus" / "hard").is_file()


def test_zip_escape_refused_and_plain_zip_extracts(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../../escape.txt", "evil")
    with pytest.raises(SpeechS2SError, match="'../../escape.txt'.*outside"):
        extract(evil, tmp_path / "a" / "b")
    assert list((tmp_path / "a" / "b").iterdir()) == []

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("corpus/ok.txt", "fine")
    assert (extract(good, tmp_path / "out") / "corpus" / "ok.txt").read_text() == "fine"


def test_cli_refuses_a_symlink_chain_in_one_line(tmp_path):
    from click.testing import CliRunner

    from speechs2s.cli import main

    archive = tmp_path / "chain.tar"
    add_links(archive, ("up", "."), ("corpus/out", "../up/.."))
    target = tmp_path / "out" / "inner"
    result = CliRunner().invoke(main, ["download", archive.as_uri(), f"{tmp_path}/downloads/", "--extract", str(target)])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}/downloads/chain.tar: refusing member 'corpus/out' links to 'corpus/../up/..': "
        "goes through symlink member 'up'"]
    assert list(target.iterdir()) == []
