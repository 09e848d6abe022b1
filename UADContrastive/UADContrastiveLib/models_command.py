"""`uadc models list|info|verify|import|download`."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .errors import InputError, ModelError
from .resources import user_cache_dir


def _describe(model_dir: Path, card: dict) -> str:
    values = (card.get("thresholds") or {}).get("values", {})
    return (f"{card.get('name', model_dir.name):28s} {card.get('engine', '?'):22s} "
            f"{card.get('modality', '?'):5s} v{card.get('version', '?'):7s} "
            f"{'calibrated' if values else 'uncalibrated':12s} {model_dir}")


def install_model_folder(source: Path) -> Path:
    """Verify a model folder against its card, then copy it atomically into the user cache."""
    from .zoo import read_card, verify_model

    verify_model(source)
    name = read_card(source)["name"]
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


def run_models(args) -> int:
    from .zoo import list_models, read_card, resolve_model, verify_model

    if args.models_command == "list":
        models = list_models()
        if not models:
            print("No models installed.")
        for model in models:
            print(_describe(model["path"], read_card(model["path"])))
        return 0
    if args.models_command == "info":
        print(json.dumps(read_card(resolve_model(args.name)), indent=2))
        return 0
    if args.models_command == "verify":
        model_dir = resolve_model(args.model)
        verify_model(model_dir)
        print(f"{model_dir}: every file matches its sha256 in model.json")
        return 0
    if args.models_command == "import":
        print(f"imported into {import_model(args.source)}")
        return 0
    if args.models_command == "download":
        print(f"downloaded into {download_model(args.url, args.sha256)}")
        return 0
    raise AssertionError(args.models_command)
