"""Installing a model into the per-user cache: from a folder or .zip (offline), or a URL."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from ..errors import InputError, ModelError
from ..resources import user_cache_dir
from .registry import verify_model


def install_model_folder(source: Path) -> Path:
    """Verify a model folder against its card, then copy it atomically into the user cache."""
    name = verify_model(source).name
    target_root = user_cache_dir() / "models"
    target_root.mkdir(parents=True, exist_ok=True)
    target = target_root / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=target_root))
    try:
        shutil.copytree(source, staging / name)
        verify_model(staging / name)
        if target.exists():
            shutil.rmtree(target)
        (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def import_model(source: str | Path) -> Path:
    """Offline import of a model folder or a .zip holding one."""
    source = Path(source)
    if not source.exists():
        raise InputError(source, "does not exist.")
    if source.is_dir():
        return install_model_folder(source)
    if not zipfile.is_zipfile(source):
        raise InputError(source, "is neither a model folder nor a .zip file.")
    with tempfile.TemporaryDirectory() as unpacked:
        with zipfile.ZipFile(source) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise InputError(source, f"holds an unsafe path {member!r}; refusing to unpack.")
            archive.extractall(unpacked)
        cards = list(Path(unpacked).rglob("model.json"))
        if len(cards) != 1:
            raise InputError(source, f"must hold exactly one model.json (found {len(cards)}).")
        return install_model_folder(cards[0].parent)


def download_model(url: str, sha256: str) -> Path:
    """Download a zipped model, check its sha256 before unpacking, then import it."""
    cache = user_cache_dir() / "downloads"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache, suffix=".zip.partial", delete=False) as handle:
        partial = Path(handle.name)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - user-given model URL
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    handle.write(chunk)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise InputError(url, f"could not be downloaded ({error}).",
                             "Check the address, or download it yourself and use `uadc models import FILE`.") from None
    if digest.hexdigest() != sha256.lower():
        partial.unlink(missing_ok=True)
        raise ModelError(url, f"sha256 mismatch: expected {sha256}, got {digest.hexdigest()}; the file was discarded.")
    final = partial.with_name(url.rstrip("/").rsplit("/", 1)[-1] or "model.zip")
    partial.replace(final)
    return import_model(final)
