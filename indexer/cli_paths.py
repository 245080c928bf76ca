"""The path options of nodule-index: what each expects, checked before its command runs.

A subcommand declares a path option with ``add_path`` (a folder, a file, a catalogue, a model,
a LUNA16-layout folder, or something it writes); ``check_paths`` then finds, before anything
heavy is imported, the first one that does not exist or is the wrong kind of thing and says so
in one line: ``--index nope: no such folder (expected a catalogue folder made by nodule-index
build)``. Only the file system's shape is looked at; the commands still read and judge content.

Light by design: the standard library and ``model.store.layout`` only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from model.store.layout import CATALOGUE_CONTENTS, holds_catalogue

#: The namespace attribute that carries a subcommand's path rules (set by ``add_path``).
RULES_DEST = "path_rules"

#: ``model.nn.card.CARD_FILE``; that module imports torch, so its name is repeated here (a test
#: keeps the two equal).
CARD_FILE = "card.json"

CATALOGUE = "a catalogue folder made by nodule-index build"
MODEL = "a model folder made by nodule-index train"
LUNA = "a LUNA16-layout folder"
LUNA_CONTENTS = "subset0..9/<seriesuid>.mhd (+ .raw), annotations.csv"


class Kind(StrEnum):
    """What a path option must name."""

    FILE = "file"
    FOLDER = "folder"
    FILE_OR_FOLDER = "file or folder"
    CATALOGUE = "catalogue"
    MODEL = "model"
    LUNA = "luna"
    OUTPUT_FOLDER = "output folder"
    """Written by the command: made when missing, but must not be a file."""
    OUTPUT_FILE = "output file"
    """Written by the command: must not be a folder."""


_DEFAULT_WHAT = {
    Kind.FILE: "an existing file",
    Kind.FOLDER: "an existing folder",
    Kind.FILE_OR_FOLDER: "an existing file or folder",
    Kind.CATALOGUE: CATALOGUE,
    Kind.MODEL: MODEL,
    Kind.LUNA: LUNA,
    Kind.OUTPUT_FOLDER: "a folder to write into (made when missing)",
    Kind.OUTPUT_FILE: "a file to write",
}


@dataclass(frozen=True)
class PathRule:
    """One path option of a subcommand and what it must name.

    Attributes:
        flag: the option as typed (``--index``).
        dest: its attribute in the parsed namespace.
        kind: what it must name.
        what: what the user should pass, said after "expected".
    """

    flag: str
    dest: str
    kind: Kind
    what: str


def add_path(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Kind,
    *,
    what: str | None = None,
    group: argparse._ActionsContainer | None = None,
    **kwargs: Any,
) -> None:
    """Add the ``Path`` option ``flag`` to ``parser`` (or its ``group``) and record its rule.

    Args:
        parser: the subcommand's parser; its defaults carry the rules to ``check_paths``.
        flag: the option (``--data``).
        kind: what the path must name.
        what: said after "expected" in a message (default: the kind's own words).
        group: a (mutually exclusive) group of ``parser`` to add the option to.
        **kwargs: ``add_argument``'s other arguments (``required``, ``default``, ``help``).
    """
    action = (group or parser).add_argument(flag, type=Path, **kwargs)
    rule = PathRule(flag, action.dest, kind, what or _DEFAULT_WHAT[kind])
    rules: tuple[PathRule, ...] = parser.get_default(RULES_DEST) or ()
    parser.set_defaults(**{RULES_DEST: (*rules, rule)})


def check_paths(args: argparse.Namespace) -> str | None:
    """The first path option of ``args`` that names the wrong thing, as one line; None if none."""
    rules: tuple[PathRule, ...] = getattr(args, RULES_DEST, ())
    for rule in rules:
        value = getattr(args, rule.dest, None)
        if value is None:
            continue
        problem = path_problem(Path(value), rule.kind, rule.what)
        if problem is not None:
            reason, expected = problem
            return f"{rule.flag} {value}: {reason} (expected {expected})"
    return None


def path_problem(path: Path, kind: Kind, what: str) -> tuple[str, str] | None:
    """What is wrong with ``path`` for ``kind``, and what was expected; None when it fits."""
    if kind is Kind.FILE:
        return _existing(path, what, want_dir=False)
    if kind is Kind.FILE_OR_FOLDER:
        return None if path.exists() else ("no such file or folder", what)
    if kind is Kind.OUTPUT_FOLDER:
        return ("is a file", what) if path.exists() and not path.is_dir() else None
    if kind is Kind.OUTPUT_FILE:
        return ("is a folder", what) if path.is_dir() else None
    missing = _existing(path, what, want_dir=True)
    if missing is not None or kind is Kind.FOLDER:
        return missing
    return _contents_problem(path, kind, what)


def _existing(path: Path, what: str, *, want_dir: bool) -> tuple[str, str] | None:
    noun = "folder" if want_dir else "file"
    if not path.exists():
        return f"no such {noun}", what
    if path.is_dir() != want_dir:
        return f"not a {noun}", what
    return None


def _contents_problem(folder: Path, kind: Kind, what: str) -> tuple[str, str] | None:
    """A folder of a catalogue, model or LUNA16 kind that lacks what marks that kind."""
    if kind is Kind.CATALOGUE and not holds_catalogue(folder):
        return "holds no catalogue", f"{what}, which holds {CATALOGUE_CONTENTS}"
    if kind is Kind.MODEL and not (folder / CARD_FILE).is_file():
        return f"holds no {CARD_FILE}", f"{what}: {CARD_FILE}, weights.pt"
    # The same test as indexer.data.luna.find_series; any() stops at the first scan.
    if kind is Kind.LUNA and not any(folder.glob("subset*/*.mhd")):
        return "holds no subset*/<seriesuid>.mhd scans", f"{what}: {LUNA_CONTENTS}"
    return None
