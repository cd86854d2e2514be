"""``python -m trainer``: train, evaluate, and manage registry versions from the command line.

Human-readable progress goes to stderr; with ``--json`` the last line on stdout is one JSON
object, so scripts can read results without parsing prose.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import typing
from typing import Annotated, Any, Literal

from pydantic import ValidationError

from core.datasets import DatasetError, load_dataset
from core.evaluation import held_out
from core.registry import ModelRegistry, RegistryError
from core.settings import Settings, SettingsError
from core.training_config import PRESETS, TrainConfig
from core.validation import describe_validation
from trainer.class_names import load_class_names
from trainer.evaluation import evaluate, format_report
from trainer.export import EXPORT_FORMATS, export_png, export_rows
from trainer.pipeline import TEST_FRACTION, train_and_publish
from trainer.training import EpochReport

# Every TrainConfig field but the preset (its own flag, which picks the defaults the others override).
CONFIG_FIELDS = tuple(name for name in TrainConfig.model_fields if name != "preset")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``CONFIG_FIELDS`` entry (``lr_schedule`` -> ``--lr-schedule``), typed, with the
    Literal's choices and the field's description; generated, so a new field cannot be forgotten.

    Every flag defaults to None, "not given": the preset supplies the value then.
    """
    defaults = TrainConfig()
    for name in CONFIG_FIELDS:
        field = TrainConfig.model_fields[name]
        kind = field.annotation
        options: dict[str, Any] = {}
        if typing.get_origin(kind) is list:  # list[int]: space-separated values
            item = typing.get_args(kind)[0]
            # list[Annotated[int, Field(ge=...)]]: parse an int; pydantic checks the bounds
            options.update(nargs="+", type=typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item)
        elif typing.get_origin(kind) is Literal:
            options["choices"] = list(typing.get_args(kind))
        elif kind in (int, float, str):
            options["type"] = kind
        else:  # a new kind of field: say so when the parser is built, not when a user runs it
            raise TypeError(f"TrainConfig.{name}: no command-line flag for {kind}")
        default = getattr(defaults, name)
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        help_text = f"{field.description} (default {shown})".replace("%", "%%")
        parser.add_argument(f"--{name.replace('_', '-')}", help=help_text, **options)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--models-dir", default=str(settings.models_dir),
                         help="registry root (env MODELS_DIR, default %(default)s)")
        sub.add_argument("--model", default=settings.model_name, help="model name (default %(default)s)")
        sub.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")

    train_cmd = commands.add_parser("train", help="train a network and publish it as a new version")
    common(train_cmd)
    train_cmd.add_argument("--data", required=True, help="MNIST IDX directory or file, Kaggle train.csv, or .npz")
    dev = train_cmd.add_mutually_exclusive_group()
    dev.add_argument("--dev-data", help="labelled dev set; default: the last --dev-fraction of --data")
    dev.add_argument("--dev-fraction", type=float, default=0.2, help="share of rows held out (default 0.2)")
    train_cmd.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                           help="share of all rows, the end of the held-out ones, that training never looks at "
                                "(the test split, default %(default)s; 0: none; unused with --dev-data)")
    train_cmd.add_argument("--preset", choices=PRESETS, default="default",
                           help="'seed' reproduces the tutorial 784-10-10 network")
    train_cmd.add_argument("--class-names", metavar="fashion|digits|FILE",
                           help="names of the classes in label order, written into the manifest: 'fashion' "
                                "(Fashion-MNIST's), 'digits' ('0'..'9'), or a file (JSON list or one per line)")
    add_config_flags(train_cmd)

    eval_cmd = commands.add_parser("evaluate", help="accuracy, loss, per-class metrics, confusion matrix")
    common(eval_cmd)
    eval_cmd.add_argument("--data", required=True,
                          help="labelled data; the file the version trained on is scored on its dev split only")
    eval_cmd.add_argument("--all-rows", action="store_true",
                          help="score every row, also those the version was trained on (a figure that flatters)")
    which = eval_cmd.add_mutually_exclusive_group()
    which.add_argument("--version", type=int)
    which.add_argument("--alias")

    models_cmd = commands.add_parser("models", help="list, show or promote registry versions")
    models_sub = models_cmd.add_subparsers(dest="action", required=True)
    for action in ("list", "show", "promote"):
        sub = models_sub.add_parser(action)
        common(sub)
        if action in ("show", "promote"):
            sub.add_argument("version", type=int)
        if action == "promote":
            sub.add_argument("--alias", default="production", help="alias to point (default %(default)s)")

    export_cmd = commands.add_parser("export", help="write dataset rows as a Kaggle CSV or a V1 JSON request body")
    export_cmd.add_argument("--data", required=True, help="MNIST IDX directory or file, Kaggle CSV, or .npz")
    export_cmd.add_argument("--format", choices=EXPORT_FORMATS, default="csv",
                            help="csv (Kaggle test.csv), train-csv (with label), v1-json, or png (one digit, the "
                                 "row at --start, as a scan: dark ink on white, 112x112) (default %(default)s)")
    export_cmd.add_argument("--start", type=int, default=0, help="first row (default 0)")
    export_cmd.add_argument("--rows", type=int, default=10, help="how many rows (default %(default)s)")
    return parser


EVERY_EPOCH_UP_TO = 50  # a longer run (the seed preset's 500 full-batch steps) logs about 25 lines


def _log_step(epochs: int) -> int:
    return 1 if epochs <= EVERY_EPOCH_UP_TO else math.ceil(epochs / 25)


def _print_epoch(report: EpochReport) -> None:
    step = _log_step(report.epochs)
    if not sys.stderr.isatty() and step > 1:
        if report.epoch == 1:
            sys.stderr.write(f"(logging every {step}th epoch of {report.epochs}, and the last)\n")
        if report.epoch % step and report.epoch not in (1, report.epochs):
            return
    dev = (f"  dev loss {report.dev_loss:.4f} acc {report.dev_accuracy:.4f}"
           if report.dev_loss is not None else "")
    line = (f"epoch {report.epoch:>3}/{report.epochs}  loss {report.train_loss:.4f} "
            f"acc {report.train_accuracy:.4f}{dev}  lr {report.learning_rate:.2e}  {report.seconds:.2f}s")
    if sys.stderr.isatty():
        width = 20
        done = round(width * report.epoch / report.epochs)
        end = "\n" if report.epoch == report.epochs else ""
        sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {line}{end}")
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def cmd_train_config(args: argparse.Namespace) -> TrainConfig:
    """The preset's configuration with the flags that were given."""
    return TrainConfig.for_preset(args.preset, **{name: getattr(args, name) for name in CONFIG_FIELDS})


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    config = cmd_train_config(args)
    class_names = load_class_names(args.class_names) if args.class_names is not None else None
    registry = ModelRegistry(args.models_dir)
    published = train_and_publish(registry, args.model, args.data, config, args.dev_data, args.dev_fraction,
                                  on_epoch=_print_epoch, class_names=class_names, test_fraction=args.test_fraction)
    summary = published.summary()
    metrics = summary["metrics"]
    test = f", test accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics else ""
    print(f"published {published.name} version {published.version} at {published.path}: "
          f"dev accuracy {metrics.get('dev_accuracy', float('nan')):.4f}{test} "
          f"(best epoch {published.result.best_epoch}, {published.result.seconds:.1f}s)", file=sys.stderr)
    return summary


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    registry = ModelRegistry(args.models_dir)
    model = registry.load(args.model, version=args.version, alias=args.alias)
    data = load_dataset(args.data)
    # The same rows the API's evaluation endpoint scores: never the training rows unless asked for.
    chosen = held_out(registry.manifest(model.name, model.version), data, all_rows=args.all_rows)
    report = {**evaluate(model, data.tail(chosen.rows)), "split": chosen.split, "trained_rows": chosen.trained_rows}
    print(format_report(report), file=sys.stderr)
    if chosen.trained_rows:
        print(f"warning: {chosen.trained_rows} of these {chosen.rows} rows were training rows of "
              f"{model.name} v{model.version}: this accuracy overstates what unseen digits get", file=sys.stderr)
    return report


def cmd_models(args: argparse.Namespace) -> dict[str, Any]:
    registry = ModelRegistry(args.models_dir)
    if args.action == "promote":
        # Refuses (exit 2, with the reason) an invalid alias or a version that fails its digest or
        # architecture check, instead of pointing production at a model no server will load.
        aliases = registry.promote(args.model, args.alias, args.version)
        print(f"{args.model}: {args.alias} -> version {args.version}", file=sys.stderr)
        return {"model": args.model, "aliases": aliases}
    if args.action == "show":
        return registry.manifest(args.model, args.version)
    aliases = registry.aliases(args.model)
    versions = []
    for version in registry.versions(args.model):
        manifest = registry.manifest(args.model, version)
        tags = [alias for alias, v in aliases.items() if v == version]
        metrics = manifest.get("metrics", {})
        versions.append({"version": version, "created_at": manifest.get("created_at"), "aliases": tags,
                         "dev_accuracy": metrics.get("dev_accuracy"), "test_accuracy": metrics.get("test_accuracy")})
        test = f"  test_accuracy {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics else ""
        print(f"{version:>4}  {manifest.get('created_at')}  dev_accuracy {metrics.get('dev_accuracy', 0):.4f}{test}"
              f"  {' '.join(tags)}", file=sys.stderr)
    return {"model": args.model, "versions": versions, "aliases": aliases}


def describe_error(exc: Exception) -> str:
    """One line naming what was wrong; pydantic's multi-line report becomes 'field: problem; ...'."""
    if isinstance(exc, ValidationError):
        return "invalid training configuration: " + describe_validation(exc, whole="config")
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    if args.format == "png":
        if sys.stdout.isatty():
            raise ValueError("--format png writes a binary image: redirect it to a file (> digit.png)")
        export_png(load_dataset(args.data, require_labels=False), args.start, sys.stdout.buffer)
        sys.stdout.flush()
        print(f"wrote row {args.start} as png", file=sys.stderr)
        return {"rows": 1}
    written = export_rows(load_dataset(args.data, require_labels=args.format == "train-csv"), args.start,
                          args.rows, args.format, sys.stdout)
    print(f"wrote {written} rows as {args.format}", file=sys.stderr)
    return {"rows": written}


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings()
    except SettingsError as exc:  # one short line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "models": cmd_models, "export": cmd_export}[args.command]
    try:
        result = handler(args)
    except (DatasetError, RegistryError, ValidationError, ValueError, OSError) as exc:
        message = describe_error(exc)
        print(f"error: {message}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": message}))
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
    elif args.command == "models" and args.action == "show":
        print(json.dumps(result, indent=2))
    return 0
