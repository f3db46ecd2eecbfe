"""``download``: offline is a clear error, and nothing that fails its checksum is kept."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
import urllib.request

import pytest

from defdistill.data import DataError
from defdistill.data.download import download


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="are you offline"):
        download("mnist", tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_rejects_a_bad_checksum_and_keeps_good_files(tmp_path, monkeypatch):
    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    blobs = {"train-images-idx3-ubyte": gzip.compress(b"not mnist")}
    monkeypatch.setattr(
        urllib.request, "urlopen",
        lambda url, timeout: Response(blobs.get(url.rsplit("/", 1)[1][:-3], b"")),
    )
    with pytest.raises(DataError, match="checksum mismatch"):
        download("mnist", tmp_path)
    assert not any(p.name.endswith(".gz") for p in tmp_path.iterdir())


def test_download_into_a_file_or_an_uncreatable_directory_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="afile is a file; give a directory"):
        download("cifar10", tmp_path / "afile")
    blob = b"a verified archive"
    monkeypatch.setattr("defdistill.data.download._fetch", lambda url, timeout: blob)
    monkeypatch.setattr("defdistill.data.download.CIFAR10_ARCHIVE_MD5", hashlib.md5(blob).hexdigest())
    with pytest.raises(DataError, match=r"/proc/defdistill-nowhere/x/cifar-10-python.tar.gz: cannot write"):
        download("cifar10", "/proc/defdistill-nowhere/x")  # no mkdir succeeds under /proc, even as root
    assert download("cifar10", tmp_path / "new").read_bytes() == blob
