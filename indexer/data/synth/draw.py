"""Which real LIDC nodules go into which synthetic scan: each at most once, patients kept whole.

Drawing with replacement put one LIDC nodule into two synthetic patients, so that a search with
same-patient exclusion still found the nodule's exact copy. Here the source's nodules are drawn
without replacement, and by patient: the LIDC patients are shuffled, and a synthetic patient takes
the next whole LIDC patient whenever the nodules it already holds do not fill its next scan. The
nodules of an LIDC patient that its synthetic patient does not use are never used at all, so an
LIDC patient's nodules (and two reads of one nodule split into two groups, or one nodule seen in
two of its scans) never end up in two synthetic patients.

A source smaller than a set's 3-9 nodules per scan (a small test table, or very many scans) gives
every scan proportionally fewer, at least one; a set that cannot get one nodule per scan is an
error.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from indexer.data.synth.profiles import NoduleProfile

logger = logging.getLogger(__name__)

#: Steps of the search for the largest share of the wanted nodule counts the source can give.
_BISECTIONS = 20


class NodulePoolError(ValueError):
    """The source has too few LIDC nodules (or patients) for the number of scans asked for."""


def shuffled_patients(
    profiles: Sequence[NoduleProfile], rng: np.random.Generator
) -> list[list[NoduleProfile]]:
    """The source's nodules grouped by LIDC patient, patients and nodules in a random order.

    Raises:
        NodulePoolError: two nodules of the source share a source id (it would be drawn twice).
    """
    by_patient: dict[str, list[NoduleProfile]] = defaultdict(list)
    for profile in profiles:
        by_patient[profile.lidc_patient].append(profile)
    if len({p.source_id for p in profiles}) != len(profiles):
        raise NodulePoolError("the LIDC source names two nodules alike; cannot draw each once")
    # Sorted first, so the order depends on the seed only, not on the source's row order.
    keys = sorted(by_patient)
    groups = []
    for k in rng.permutation(len(keys)):
        nodules = sorted(by_patient[keys[int(k)]], key=lambda p: p.source_id)
        groups.append([nodules[int(i)] for i in rng.permutation(len(nodules))])
    return groups


def _assign(
    groups: Sequence[Sequence[NoduleProfile]], scan_patients: Sequence[str], counts: Sequence[int]
) -> list[list[NoduleProfile]] | None:
    """Each scan's nodules, or None when the LIDC patients run out."""
    queue = iter(groups)
    # A synthetic patient's LIDC nodules not yet placed; only its own later scans may take them.
    held: dict[str, list[NoduleProfile]] = defaultdict(list)
    drawn = []
    for patient, n in zip(scan_patients, counts, strict=True):
        pool = held[patient]
        while len(pool) < n:
            group = next(queue, None)
            if group is None:
                return None
            pool.extend(group)
        drawn.append(pool[:n])
        del pool[:n]
    return drawn


def _scaled(counts: Sequence[int], share: float) -> list[int]:
    return [max(1, int(c * share)) for c in counts]


def templates(
    profiles: Sequence[NoduleProfile], counts: Sequence[int], rng: np.random.Generator
) -> list[list[NoduleProfile]]:
    """Each scan's nodules from a table of templates: distinct within a scan, reused across."""
    return [
        [
            profiles[int(i)]
            for i in rng.choice(len(profiles), size=min(n, len(profiles)), replace=False)
        ]
        for n in counts
    ]


def draw_nodules(
    profiles: Sequence[NoduleProfile],
    scan_patients: Sequence[str],
    counts: Sequence[int],
    rng: np.random.Generator,
) -> list[list[NoduleProfile]]:
    """The nodules of every scan: no LIDC nodule twice, no LIDC patient in two synthetic ones.

    Args:
        profiles: the source's nodules.
        scan_patients: each scan's synthetic patient id.
        counts: how many nodules each scan wants (fewer when the source is too small).
        rng: the only randomness used (which patients, in which order).

    A source that names no LIDC patient for any nodule (a table without series, such as the
    tests' tiny table of templates) cannot say which rows are one real nodule or one patient:
    its rows are templates, and each scan draws its own without replacement (``templates``).

    Raises:
        NodulePoolError: the source cannot give every scan one nodule.
    """
    if profiles and all(p.patient_id is None for p in profiles):
        return templates(profiles, counts, rng)
    groups = shuffled_patients(profiles, rng)
    drawn = _assign(groups, scan_patients, counts)
    if drawn is not None:
        return drawn
    best = _assign(groups, scan_patients, _scaled(counts, 0.0))
    if best is None:
        raise NodulePoolError(
            f"{len(scan_patients)} scans need at least one LIDC nodule each, and no LIDC nodule "
            f"or patient may be used twice: the source's {len(profiles)} nodules of "
            f"{len(groups)} patients are not enough; ask for fewer scans"
        )
    # The largest share of the wanted counts that fits (a deterministic bisection).
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2.0
        attempt = _assign(groups, scan_patients, _scaled(counts, middle))
        if attempt is None:
            high = middle
        else:
            low, best = middle, attempt
    logger.warning(
        "the source's %d LIDC nodules of %d patients cannot give %d scans %d nodules without "
        "using one twice; they get %d in all (fewer per scan, at least 1)",
        len(profiles),
        len(groups),
        len(scan_patients),
        sum(counts),
        sum(len(d) for d in best),
    )
    return best
