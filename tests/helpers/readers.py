"""The CT readers under test and the small MetaImage files they are fed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model.ct.open import load_volume, open_volume
from model.ct.volume import CTVolume, VolumeSource
from tests.helpers.synthetic import FLIP_Z, make_geometry

READERS = [pytest.param(load_volume, id="load"), pytest.param(open_volume, id="open")]


def small_volume() -> CTVolume:
    geometry = make_geometry(SHAPE_ZYX, (0.7, 0.8, 2.0), (-10.0, 20.0, -30.0), FLIP_Z)
    hu = np.random.default_rng(0).integers(-1000, 1000, SHAPE_ZYX).astype(np.float32)
    return CTVolume(hu_zyx=hu, geometry=geometry)


def header(dims: str = "10 8 6", data_file: str = "ct.raw", extra: str = "") -> str:
    return (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"Offset = 0 0 0\nElementSpacing = 1 1 1\nDimSize = {dims}\n{extra}"
        f"ElementType = MET_SHORT\nElementDataFile = {data_file}\n"
    )


def raw_bytes() -> bytes:
    return small_volume().hu_zyx.astype("<i2").tobytes()


Reader = Callable[[Path], VolumeSource]


SHAPE_ZYX = (6, 8, 10)
