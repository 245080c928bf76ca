"""``nodule-index``: the offline batch job's command line.

The parser is built from light modules only (each command's ``indexer.*.arguments``), so
``--help`` and usage errors answer without importing torch, faiss, SimpleITK, DICOM or plotting
libraries. A command's implementation is imported when it runs
(``RUNNERS``), after its path options were checked (``indexer.cli_paths``): a wrong path is
answered at once, in one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import cast

from indexer.bootstrap import arguments as bootstrap_arguments
from indexer.build import arguments as build_arguments
from indexer.cli_paths import check_paths
from indexer.crossval import arguments as crossval_arguments
from indexer.data import arguments as data_arguments
from indexer.data.arguments import parse_center_xyz
from indexer.evaluate import arguments as evaluate_arguments
from indexer.labels import arguments as labels_arguments
from indexer.sr import arguments as sr_arguments
from indexer.train import arguments as train_arguments

__all__ = ["RUNNERS", "build_parser", "main", "parse_center_xyz"]

logger = logging.getLogger("nodule-index")

DESCRIPTION = (
    "The offline batch job of nodule-search: synthetic and real data sets in the LUNA16 layout, "
    "malignancy labels, training, catalogue builds and their evaluation."
)
EPILOG = (
    "Run nodule-index COMMAND --help for a command's options. Settings come from NODULE_* "
    "environment variables (NODULE_DEVICE, the NODULE_DICOMWEB_* of a PACS); see docs/cli.md."
)

#: Where each command runs, as ``module:function``; the module is imported only then.
RUNNERS: dict[str, str] = {
    "synth": "indexer.data.command:run_synth",
    "patch": "indexer.data.command:run_patch",
    "import-crops": "indexer.data.command:run_import_crops",
    "real-set": "indexer.data.command:run_real_set",
    "labels": "indexer.labels.command:run",
    "train": "indexer.train.command:run",
    "build": "indexer.build.command:run_build",
    "add": "indexer.build.command:run_build",
    "verify": "indexer.build.command:run_verify",
    "versions": "indexer.build.command:run_versions",
    "rollback": "indexer.build.command:run_rollback",
    "bootstrap": "indexer.bootstrap.command:run",
    "evaluate": "indexer.evaluate.command:run",
    "report": "indexer.sr.command:run",
    "crossval": "indexer.crossval.command:run",
    "describe": "indexer.data.command:run_describe",
}

#: The commands whose runner also takes the settings (the synth sources, PACS credentials).
_WITH_SETTINGS = frozenset({"synth", "build", "add"})


def build_parser() -> argparse.ArgumentParser:
    """The whole ``nodule-index`` parser, every subcommand registered (nothing heavy imported)."""
    parser = argparse.ArgumentParser(prog="nodule-index", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    data_arguments.add_synth(sub)
    data_arguments.add_patch(sub)
    data_arguments.add_import_crops(sub)
    data_arguments.add_real_set(sub)
    labels_arguments.add_parser(sub)
    train_arguments.add_parser(sub)
    build_arguments.add_parsers(sub)
    bootstrap_arguments.add_parser(sub)
    evaluate_arguments.add_evaluate(sub)
    sr_arguments.add_report(sub)
    crossval_arguments.add_crossval(sub)
    data_arguments.add_describe(sub)
    return parser


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    # "--center -128.7,-175.3,-298.4" would be read as an option; glue it to its flag.
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        if tokens[i] == "--center" and i + 1 < len(tokens):
            out.append(f"--center={tokens[i + 1]}")
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


def _usage_error(message: str) -> None:
    """Say a wrong argument in one line, as argparse says its own errors."""
    if logger.hasHandlers():
        # A caller set up logging (bootstrap's steps, a job wrapping main, tests): its log.
        logger.error("%s", message)
    else:
        sys.stderr.write(f"nodule-index: error: {message}\n")


def _run(args: argparse.Namespace) -> int:
    """Read the settings, import the command's implementation and run it."""
    # Imported here: the settings pull in the PACS client (and pydicom) that --help never needs.
    from pydantic import ValidationError

    from indexer.settings import IndexerSettings

    try:
        settings = IndexerSettings()
    except ValidationError as e:
        logger.error("invalid NODULE_* settings: %s", e)
        return 2
    if getattr(args, "device", None) is None:
        # --device not given (or a command without one that runs others): NODULE_DEVICE or auto.
        args.device = settings.device
    module, _, name = RUNNERS[args.command].partition(":")
    runner = cast(Callable[..., int], getattr(importlib.import_module(module), name))
    if args.command == "bootstrap":
        return runner(args, main)  # its steps run through main, each as on its own
    if args.command in _WITH_SETTINGS:
        return runner(args, settings)
    return runner(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nodule-index``; returns the process exit code."""
    try:
        args = build_parser().parse_args(
            _join_negative_values(sys.argv[1:] if argv is None else argv)
        )
    except SystemExit as e:  # argparse has printed usage or help; report its code, don't exit
        return e.code if isinstance(e.code, int) else 2
    problem = check_paths(args)
    if problem is not None:
        _usage_error(problem)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return _run(args)
