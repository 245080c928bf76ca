"""``nodule-index crossval``: a training recipe judged by patient-grouped cross-validation.

    nodule-index crossval --data data/real --out reports/cv/finetune -- --init models/demo

trains one model per fold (``train`` with the options after ``--`` and the fold's subsets held
out; a fold whose model was trained before with the same options is reused) and writes
``cv.json`` and ``cv.md``. ``--model DIR`` instead judges one fixed model (a model trained on
other data: no fold can have been seen).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from indexer.cli_paths import check_paths
from indexer.crossval.folds import CrossValidationError, CrossValOptions, cross_validate
from indexer.evaluate import markdown
from indexer.evaluate.baselines import BASELINE_NAMES, BASELINES
from indexer.evaluate.loading import EvaluateOptions
from indexer.evaluate.mask_quality import MaskQuality, group_name
from indexer.evaluate.protocol import ALIKE_METRICS, LABEL_METRICS
from indexer.evaluate.records import LooksAlike, PairedDifference
from indexer.search.data import RatedSetError, cut_rated, load_rated
from indexer.search.fit import FitError, fit_space
from indexer.train import arguments as train_arguments
from indexer.train import command as train_command
from model.nn.card import CardError, MaskPolicy, read_card, write_card
from model.nn.embedder import Embedder

logger = logging.getLogger(__name__)


def _train_namespace(
    data: Path, out: Path, val_subsets: tuple[str, ...], extra: list[str], device: str
) -> argparse.Namespace:
    """The fold's ``train`` options; ``device``: where it trains unless ``extra`` says."""
    parser = argparse.ArgumentParser(prog="nodule-index", exit_on_error=False)
    sub = parser.add_subparsers(dest="command")
    train_arguments.add_parser(sub)
    held_out = [a for s in val_subsets for a in ("--val-subset", s)]
    argv = ["train", "--data", str(data), "--out", str(out), *held_out, "--no-progress", *extra]
    parsed = parser.parse_args(argv)
    problem = check_paths(parsed)
    if problem is not None:
        raise CrossValidationError(f"train options after --: {problem}")
    if parsed.device is None:
        parsed.device = device
    return parsed


def _looks_alike(section: dict[str, Any]) -> LooksAlike | None:
    found = section.get("looks_alike")
    return None if found is None else LooksAlike.model_validate(found)


def _row(name: str, section: dict[str, Any]) -> str:
    """A table row: binary and 4-class Recall@1 and the vote's AUC of one section."""
    r = section["recall_at_k"]
    return (
        f"| {name} | {markdown.fmt(r['binary']['1'])} | {markdown.fmt(r['four_class']['1'])} | "
        f"{markdown.fmt(section['auc'])} |"
    )


def _paired(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, PairedDifference]]:
    """Paired differences as ``cv.json`` holds them, typed again."""
    return {
        name: {m: PairedDifference.model_validate(d) for m, d in by_metric.items()}
        for name, by_metric in raw.items()
    }


def render_markdown(report: dict[str, Any], title: str) -> str:
    """The pooled CV table with the paired network-minus-baseline intervals."""
    net = report["network"]
    lines = [
        f"# {title}",
        "",
        f"{report['protocol']}; {report['n_queries']} labelled nodules of "
        f"{report['n_patients']} patients, folds {report['folds']}, neighbours of the query's "
        "own patient excluded.",
        "",
        "| features | binary R@1 | 4-class R@1 | vote AUC |",
        "|---|---|---|---|",
    ]

    lines.append(_row("network (cross-validated)", net))
    for name in BASELINES:
        lines.append(_row(BASELINE_NAMES[name], report["baselines"][name]))
    lines.append("")
    sections = {
        "network (cross-validated)": net,
        **{BASELINE_NAMES[name]: report["baselines"][name] for name in BASELINES},
    }
    lines += markdown.looks_alike_lines(
        [(name, _looks_alike(section)) for name, section in sections.items()]
    )
    paired = _paired(report["paired_vs_baselines"])
    lines += markdown.paired_lines(paired, BASELINE_NAMES, LABEL_METRICS, ALIKE_METRICS)
    if report.get("search"):
        lines += ["", *search_lines(report["search"], report)]
    quality = report.get("mask_quality")
    masks = MaskQuality.model_validate(quality) if quality else None
    lines += ["", *markdown.mask_quality_lines(masks)]
    lines += ["", f"Size-profile weight per fold: {report['size_profile_weight_per_fold']}", ""]
    return "\n".join(lines)


def search_lines(search: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """The search vector's blocks: the nested choice, its scores beside the others, paired."""
    choice = search["choice"]
    recorded, estimated = search["recorded_sizes"], search["estimated_sizes"]
    lines = [
        "## The search vector's blocks, chosen by nested cross-validation",
        "",
        f"{choice['protocol']}. {choice['n_candidates']} candidates (weights 0/1/2 of features, "
        "size, density, shape and the projection learned from readers' ratings; its ridge "
        "strength). Chosen per outer fold: "
        + "; ".join(f"fold {f}: {name}" for f, name in enumerate(choice["chosen_per_fold"]))
        + f". Over all folds (what `--set-search` writes into a model): **{choice['final']}**.",
        "",
        "| search by | binary R@1 | 4-class R@1 | vote AUC |",
        "|---|---|---|---|",
    ]

    lines += [
        _row("chosen blocks, recorded sizes (nested CV)", recorded),
        _row(
            f"chosen blocks, estimated sizes ({search['n_estimated']}/{report['n_queries']} "
            "with an estimate)",
            estimated,
        ),
        _row("network features alone (the paper's)", report["network"]),
        _row(BASELINE_NAMES["diameter_density"], report["baselines"]["diameter_density"]),
        "",
    ]
    mine, other = _looks_alike(recorded), _looks_alike(report["baselines"]["diameter_density"])
    if mine is not None and other is not None:
        closer = markdown.closer_characteristics(mine, other)
        lines += [
            f"Top-1 neighbours closer in the readers' ratings than diameter + density's on "
            f"{len(closer)} of 8 characteristics" + (f" ({', '.join(closer)})." if closer else "."),
            "",
        ]
    lines += [
        "Candidates (best plain-CV first, then the anchors; plain CV peeks, the nested row "
        "above does not):",
        "",
        "| candidate | plain CV binary R@1 | plain CV 4-class R@1 | inner binary R@1 | "
        "inner 4-class R@1 |",
        "|---|---|---|---|---|",
    ]
    for c in choice["candidates"]:
        lines.append(
            f"| {c['name']} | {markdown.fmt(c['plain_cv_binary_r1'])} | "
            f"{markdown.fmt(c['plain_cv_four_class_r1'])} | {markdown.fmt(c['inner_binary_r1'])} | "
            f"{markdown.fmt(c['inner_four_class_r1'])} |"
        )
    names = {"network": "network features alone", **BASELINE_NAMES}
    paired = _paired(search["paired"])
    lines += [
        "",
        *markdown.paired_lines(paired, names, LABEL_METRICS, ALIKE_METRICS, "chosen vector"),
    ]
    estimated_paired = _paired(search["paired_estimated"])
    lines += [
        "With estimated sizes (the click-only path), chosen vector minus:",
        "",
        *markdown.paired_table(estimated_paired, names, LABEL_METRICS),
    ]
    return lines


def set_search(model_dir: Path, report: dict[str, Any], data_dir: Path, workers: int) -> bool:
    """Fit the folds' final choice of blocks on every rated nodule and write it into a card.

    The profile statistics and the learned projection are fitted with ``model_dir``'s own
    features (a model of the recipe the folds judged, trained on the whole set). False (logged)
    when the report has no choice (crossval without ``--search-blocks``).
    """
    search = report.get("search")
    if not search:
        logger.error("--set-search needs --search-blocks (the folds' choice of blocks)")
        return False
    choice = search["choice"]
    embedder = Embedder.from_model_dir(model_dir, "cpu")
    rated = load_rated(data_dir)
    cut = cut_rated(rated, embedder.card.preprocessing, workers)
    chosen_by = (
        f"nodule-index crossval --search-blocks ({report['n_queries']} nodules of "
        f"{report['n_patients']} patients; nested CV of {choice['n_candidates']} candidates; "
        f"over all folds: {choice['final']}; recipe: {' '.join(report.get('train_args', []))})"
    )
    space = fit_space(
        choice["final_weights"],
        embedder.embed_patches(cut.patches),
        cut.profiles,
        rated.targets,
        alpha=float(choice["final_alpha"]),
        trained_on=f"{data_dir}: {len(rated)} rated nodules of "
        f"{len(set(rated.patient_id))} patients (held-out patients left out)",
        chosen_by=chosen_by,
    )
    card = read_card(model_dir).with_search(space)
    write_card(model_dir, card)
    logger.info(
        "search space of %s: %s (fingerprint %s)", model_dir, choice["final"], card.fingerprint[:12]
    )
    return True


def set_mask_policy(model_dir: Path, report: dict[str, Any], cv_json: Path) -> bool:
    """Write the folds' mask policy into a model's card; False (logged) when there is none.

    The policy changes the model's sizes, not its vectors (``model.nn.card.MaskPolicy``).
    """
    quality = report.get("mask_quality")
    if not quality:
        logger.error(
            "--set-mask-policy: the folds measured no masks (a recipe without "
            "--segmentation-weight, or a set without nodule_masks/)"
        )
        return False
    masks = MaskQuality.model_validate(quality)
    ranges = tuple(masks.policy_region_growing_mm)
    facts = "; ".join(
        f"{group}: region growing minus branch Dice {markdown.fmt(c.grown_minus_network_dice)}"
        for group, c in masks.by_branch_diameter.items()
        if c.region_growing_better
    )
    chosen = (
        f"nodule-index crossval ({cv_json}, {report['n_queries']} nodules of "
        f"{report['n_patients']} patients, recipe: {' '.join(report['train_args'])})"
        + (f"; {facts}" if facts else "; region growing better nowhere")
    )
    card = read_card(model_dir)
    policy = MaskPolicy(region_growing_mm=ranges, chosen_by=chosen)
    write_card(model_dir, card.model_copy(update={"mask_policy": policy}))
    shown = ", ".join(group_name(low, high) for low, high in ranges) or "nowhere"
    logger.info("mask policy of %s: region growing where the branch measures %s", model_dir, shown)
    return True


def run(args: argparse.Namespace) -> int:
    """Train the fold models (or take the fixed one), cross-validate, write the report."""
    extra = [a for a in args.train_args if a != "--"]
    if args.model is not None and extra:
        logger.error("--model judges a fixed model; train options after -- make no sense with it")
        return 2

    def model_for_fold(fold: int, val_subsets: tuple[str, ...]) -> Path:
        if args.model is not None:
            return Path(str(args.model))
        out: Path = Path(args.out) / f"fold{fold}"
        train_args = _train_namespace(args.data, out, val_subsets, extra, args.device)
        logger.info("fold %d: training without %s", fold, ",".join(val_subsets))
        if train_command.run(train_args) != 0:
            raise CrossValidationError(f"training fold {fold} failed (see above)")
        return out

    try:
        options = CrossValOptions(
            n_folds=args.folds,
            size_profile_weights=tuple(args.size_profile_weight or [0.0]),
            search_blocks=args.search_blocks,
            evaluate=EvaluateOptions(
                exclude_same_patient=True,
                bootstrap_replicates=args.bootstrap,
                workers=max(1, args.workers),
            ),
        )
        report = cross_validate(args.data, model_for_fold, options)
    except (CrossValidationError, CardError, ValidationError, argparse.ArgumentError, OSError) as e:
        logger.error("%s", e)
        return 2
    report["train_args"] = extra
    report["model"] = str(args.model) if args.model else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cv.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    title = f"Cross-validation of {args.model or ' '.join(extra) or 'train defaults'}"
    markdown = render_markdown(report, title)
    (args.out / "cv.md").write_text(markdown, encoding="utf-8")
    logger.info("cross-validation report in %s\n%s", args.out, markdown)
    status = 0
    if args.set_mask_policy is not None:
        try:
            if not set_mask_policy(Path(args.set_mask_policy), report, args.out / "cv.json"):
                status = 2
        except CardError as e:
            logger.error("--set-mask-policy: %s", e)
            status = 2
    if args.set_search is not None:
        try:
            if not set_search(Path(args.set_search), report, args.data, max(1, args.workers)):
                status = 2
        except (CardError, FitError, RatedSetError, ValidationError) as e:
            logger.error("--set-search: %s", e)
            status = 2
    return status
