"""The pinned control-plane binaries as their projects publish them: where, and how checked.

Each project's official release host, per platform (``linux/amd64``,
``linux/arm64``, ``darwin/amd64``, ``darwin/arm64``):

- **Kubernetes**: the single server binaries on ``dl.k8s.io``
  (``/release/<version>/bin/linux/<arch>/kube-apiserver``), about 100 MB
  each instead of the 400 MB ``kubernetes-server-linux-<arch>.tar.gz``
  that holds them. Kubernetes publishes server binaries for Linux only, so
  on macOS they are built. Checked against the ``.sha256`` file published
  next to each binary; no digest is pinned here, since the release notes
  list digests of the tarballs only, not of the single binaries.
- **etcd**: the GitHub release archive (``.tar.gz`` on Linux, ``.zip`` on
  macOS), checked against the ``SHA256SUMS`` file published with the
  release; no digest is pinned here either.
- **Helm**: the ``get.helm.sh`` archive, checked against a SHA-256 pinned
  here, copied from the v3.22.0 release notes: a checksum fetched from the
  same host as the archive proves only that the transfer was intact, a
  pinned one also that the archive is the one released.

:func:`fetch` downloads one :class:`Download`, verifies it and unpacks the
wanted files into a scratch directory; the caller moves them into the cache.
Every failure, including a host that cannot be reached, raises
:class:`FetchError`, which says why in one line, and never takes longer than
``connect_timeout`` to notice a host that does not answer.

The standard library's ``urllib`` does the HTTP: the callers are
synchronous (``ensure_assets`` runs before any event loop, sometimes inside
one), so aiohttp would need a loop of its own for three downloads.
"""

from __future__ import annotations

import hashlib
import http.client
import platform as platform_module
import re
import shutil
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "Download",
    "FetchError",
    "Platform",
    "current_platform",
    "etcd_downloads",
    "fetch",
    "helm_downloads",
    "kubernetes_downloads",
    "parse_checksums",
]

# Seconds for a host to answer (name lookup, connection, TLS, response
# headers). Short: where the release hosts are unreachable, the fallback
# (building with Go) should start at once.
CONNECT_TIMEOUT = 3.0
# Seconds a download may go without receiving a byte before it is given up.
READ_TIMEOUT = 30.0

_CHUNK = 1 << 20
_CHECKSUM_FILE_LIMIT = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")

# From https://github.com/helm/helm/releases/tag/v3.22.0 (the digests of the
# .sha256sum files on get.helm.sh, as the release notes list them).
_HELM_SHA256: dict[str, dict[str, str]] = {
    "v3.22.0": {
        "darwin/amd64": "bd1d09f316558dda23698527859600936fed1371021ce0f2272d66b2fdcfa69c",
        "darwin/arm64": "4c9982a6cdeb458b60258df66b55398ca5b19293f6877faffe2909ad6f23dfe0",
        "linux/amd64": "1e4ab49e429626cf6c6958d914248b78c9730803c2751b87627e171dc800e7bb",
        "linux/arm64": "f14e804dfee240f55525b667488fe9adca349e63e00c9af634c0beb1421ac310",
    },
}


class FetchError(RuntimeError):
    """A release file could not be downloaded, verified or unpacked (the message is one line)."""


@dataclass(frozen=True)
class Platform:
    """An operating system and CPU architecture, spelled as Go and the release hosts spell them."""

    os: Literal["linux", "darwin"]
    arch: Literal["amd64", "arm64"]

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}"


_OPERATING_SYSTEMS: dict[str, Literal["linux", "darwin"]] = {"linux": "linux", "darwin": "darwin"}
_ARCHITECTURES: dict[str, Literal["amd64", "arm64"]] = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
}


def current_platform(system: str | None = None, machine: str | None = None) -> Platform | None:
    """This machine's platform, or ``None`` where no release binaries are published for it."""
    os_name = _OPERATING_SYSTEMS.get((system or platform_module.system()).lower())
    arch = _ARCHITECTURES.get((machine or platform_module.machine()).lower())
    if os_name is None or arch is None:
        return None
    return Platform(os_name, arch)


@dataclass(frozen=True)
class Download:
    """One published file and what to take from it.

    ``members`` pairs a path inside the archive with the name the file gets
    in the cache; a ``binary`` download is the file itself, with one pair
    whose path is ignored. Exactly one of ``sha256`` (a pinned digest) and
    ``checksum_url`` (a published checksum file listing this file's name)
    says what the file must hash to.
    """

    url: str
    format: Literal["tar.gz", "zip", "binary"]
    members: tuple[tuple[str, str], ...]
    sha256: str | None = None
    checksum_url: str | None = None

    def __post_init__(self) -> None:
        if (self.sha256 is None) == (self.checksum_url is None):
            raise ValueError(f"{self.url}: give exactly one of sha256 and checksum_url")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"{self.url}: not a lower-case hex SHA-256: {self.sha256!r}")
        if not self.members or (self.format == "binary" and len(self.members) != 1):
            raise ValueError(f"{self.url}: a {self.format} download needs the files it provides")

    @property
    def filename(self) -> str:
        """The file's name as its checksum file lists it."""
        return urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1]


def kubernetes_downloads(
    version: str, platform: Platform | None, names: Sequence[str]
) -> list[Download]:
    """The ``dl.k8s.io`` server binaries ``names`` of Kubernetes ``version`` for ``platform``."""
    if platform is None or platform.os != "linux":
        raise FetchError(
            f"Kubernetes publishes no server binaries for {_describe(platform)} (only linux)"
        )
    downloads = []
    for name in names:
        url = f"https://dl.k8s.io/release/{version}/bin/{platform}/{name}"
        downloads.append(
            Download(url, "binary", ((name, name),), checksum_url=f"{url}.sha256"),
        )
    return downloads


def etcd_downloads(version: str, platform: Platform | None) -> list[Download]:
    """The GitHub release archive of etcd ``version`` for ``platform``."""
    if platform is None:
        raise FetchError(f"etcd publishes no release archive for {_describe(platform)}")
    base = f"https://github.com/etcd-io/etcd/releases/download/{version}"
    stem = f"etcd-{version}-{platform.os}-{platform.arch}"
    # etcd ships macOS builds as zip files, Linux builds as tarballs.
    archive: Literal["tar.gz", "zip"] = "zip" if platform.os == "darwin" else "tar.gz"
    return [
        Download(
            f"{base}/{stem}.{archive}",
            archive,
            ((f"{stem}/etcd", "etcd"),),
            checksum_url=f"{base}/SHA256SUMS",
        )
    ]


def helm_downloads(version: str, platform: Platform | None) -> list[Download]:
    """The ``get.helm.sh`` archive of Helm ``version`` for ``platform``, with its pinned digest."""
    digest = _HELM_SHA256.get(version, {}).get(str(platform))
    if platform is None or digest is None:
        raise FetchError(f"no pinned SHA-256 of helm {version} for {_describe(platform)}")
    pair = f"{platform.os}-{platform.arch}"
    return [
        Download(
            f"https://get.helm.sh/helm-{version}-{pair}.tar.gz",
            "tar.gz",
            ((f"{pair}/helm", "helm"),),
            sha256=digest,
        )
    ]


def _describe(platform: Platform | None) -> str:
    if platform is not None:
        return str(platform)
    return f"this machine ({platform_module.system()} {platform_module.machine()})"


def parse_checksums(text: str, filename: str) -> str:
    """The SHA-256 of ``filename`` in a checksum file.

    Reads ``sha256sum`` output (``<digest>  <name>``, ``*<name>`` in binary
    mode, several files per checksum file) and the bare digest that
    ``dl.k8s.io`` publishes next to each binary.
    """
    bare = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or not _SHA256.fullmatch(fields[0].lower()):
            continue
        if len(fields) == 1:
            bare.append(fields[0].lower())
        elif fields[-1].lstrip("*").rsplit("/", 1)[-1] == filename:
            return fields[0].lower()
    if len(bare) == 1:
        return bare[0]
    raise FetchError(f"the checksum file lists no SHA-256 for {filename}")


# --- downloading ------------------------------------------------------------------------


def _open(url: str, *, connect_timeout: float, read_timeout: float) -> Any:
    """``urlopen`` that gives up after ``connect_timeout`` seconds without a response.

    ``urlopen``'s own timeout covers the connection and each read, but not
    the name lookup, which can block for far longer where DNS is filtered;
    so the request is made in a daemon thread (one that never delays the
    interpreter's exit) and waited for with a deadline.
    """
    outcome: list[Any] = []
    given_up = False
    lock = threading.Lock()

    def attempt() -> None:
        try:
            result: Any = urllib.request.urlopen(url, timeout=read_timeout)
        except BaseException as error:
            result = error
        with lock:
            if given_up:  # nobody will read it: let go of the connection now
                if hasattr(result, "close"):
                    result.close()
                return
            outcome.append(result)

    thread = threading.Thread(target=attempt, name="taskmill-fetch", daemon=True)
    thread.start()
    thread.join(connect_timeout)
    host = urllib.parse.urlsplit(url).netloc
    with lock:
        if not outcome:
            given_up = True
            raise FetchError(f"{host} did not answer within {connect_timeout:g}s")
    result = outcome[0]
    if isinstance(result, urllib.error.HTTPError):
        result.close()
        raise FetchError(f"{url}: HTTP {result.code} {result.reason}")
    if isinstance(result, urllib.error.URLError):
        raise FetchError(f"cannot reach {host}: {result.reason}")
    if isinstance(result, BaseException):
        raise FetchError(f"cannot reach {host}: {result}")
    return result


def _published_digest(download: Download, *, connect_timeout: float, read_timeout: float) -> str:
    assert download.checksum_url is not None
    with _open(
        download.checksum_url, connect_timeout=connect_timeout, read_timeout=read_timeout
    ) as response:
        try:
            text = response.read(_CHECKSUM_FILE_LIMIT).decode("utf-8", errors="replace")
        except OSError as error:
            raise FetchError(f"{download.checksum_url}: {error}") from error
    try:
        return parse_checksums(text, download.filename)
    except FetchError as error:
        raise FetchError(f"{download.checksum_url}: {error}") from None


def _download(
    download: Download,
    path: Path,
    *,
    connect_timeout: float,
    read_timeout: float,
    progress: Callable[[str], None],
) -> str:
    """Write the file to ``path``; return its SHA-256."""
    digest = hashlib.sha256()
    with _open(download.url, connect_timeout=connect_timeout, read_timeout=read_timeout) as src:
        length = src.headers.get("Content-Length")
        size = f" ({int(length) / 1e6:.0f} MB)" if length and length.isdigit() else ""
        progress(f"downloading {download.url}{size}...")
        try:
            with path.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, http.client.HTTPException) as error:  # a timeout, a reset, a short body
            raise FetchError(f"{download.url}: download interrupted: {error}") from error
    return digest.hexdigest()


def _copy(src: IO[bytes], path: Path) -> None:
    with path.open("wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _unpack(download: Download, archive: Path, out: Path) -> dict[str, Path]:
    """Copy the wanted members of ``archive`` (only those, by exact path) into ``out``."""
    found: dict[str, Path] = {}
    if download.format == "binary":
        ((_, name),) = download.members
        target = out / name
        archive.replace(target)
        return {name: target}
    try:
        if download.format == "tar.gz":
            with tarfile.open(archive, "r:gz") as tar:
                for member, name in download.members:
                    try:
                        info = tar.getmember(member)
                    except KeyError:
                        raise FetchError(f"{download.url} holds no {member}") from None
                    src = tar.extractfile(info) if info.isfile() else None
                    if src is None:
                        raise FetchError(f"{download.url}: {member} is not a regular file")
                    with src:
                        _copy(src, out / name)
                    found[name] = out / name
        else:
            with zipfile.ZipFile(archive) as zipped:
                for member, name in download.members:
                    try:
                        with zipped.open(member) as src:
                            _copy(src, out / name)
                    except KeyError:
                        raise FetchError(f"{download.url} holds no {member}") from None
                    found[name] = out / name
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise FetchError(f"{download.url}: cannot unpack: {error}") from error
    return found


def fetch(
    download: Download,
    workdir: Path,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Path]:
    """Download, verify and unpack ``download`` into the new directory ``workdir``.

    Returns the unpacked files by name. The digest is checked before
    anything is unpacked; on any failure :class:`FetchError` is raised and
    ``workdir`` may hold partial files, for the caller to remove.
    """
    workdir.mkdir(parents=True)
    if download.sha256 is not None:
        expected = download.sha256
    else:
        expected = _published_digest(
            download, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
    archive = workdir / "download"
    actual = _download(
        download,
        archive,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        progress=progress,
    )
    if actual != expected:
        archive.unlink()
        raise FetchError(
            f"{download.url} has SHA-256 {actual}, not the expected {expected}: refused"
        )
    out = workdir / "files"
    out.mkdir()
    return _unpack(download, archive, out)
