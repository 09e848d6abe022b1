"""`uadc models list|info|verify|import|download`: the installed models and their cards."""
from __future__ import annotations

import json

from ..errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list, inspect, verify or import models")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list")
    info = msub.add_parser("info")
    info.add_argument("name")
    verify = msub.add_parser("verify")
    verify.add_argument("--model", default=None)
    imp = msub.add_parser("import", help="import a model folder or .zip into the per-user cache (offline)")
    imp.add_argument("source")
    dl = msub.add_parser("download", help="download a model listed in a registry by URL, verified by sha256")
    dl.add_argument("url")
    dl.add_argument("--sha256", required=True)


def _describe(card) -> str:
    """One line per model; models shipped for comparison (a card `status` such as "experimental:
    ..." or "ablation: ...") say so, so nobody takes them for the default."""
    from ..zoo.card import status_kind

    calibrated = "calibrated" if card.thresholds.values else "uncalibrated"
    kind = status_kind(card.extra.get("status"))
    return (f"{card.name:28s} {card.engine:22s} {card.modality:5s} v{card.version:7s} {calibrated:12s} "
            f"{kind:12s} {card.folder}")


def run(args) -> int:
    from ..zoo import ModelCard, list_models, resolve_model, verify_model
    from ..zoo.install import download_model, import_model

    if args.models_command == "list":
        models = list_models()
        if not models:
            print("No models installed.")
        for model in models:
            print(_describe(ModelCard.read(model["path"])))
        return EXIT_OK
    if args.models_command == "info":
        print(json.dumps(ModelCard.read(resolve_model(args.name)).to_dict(), indent=2))
        return EXIT_OK
    if args.models_command == "verify":
        model_dir = resolve_model(args.model)
        verify_model(model_dir)
        print(f"{model_dir}: every file matches its sha256 in model.json")
        return EXIT_OK
    if args.models_command == "import":
        print(f"imported into {import_model(args.source)}")
        return EXIT_OK
    if args.models_command == "download":
        print(f"downloaded into {download_model(args.url, args.sha256)}")
        return EXIT_OK
    raise AssertionError(args.models_command)
