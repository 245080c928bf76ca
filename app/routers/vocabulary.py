"""The domain terms the viewer shows, served rather than written into the client."""

from __future__ import annotations

from fastapi import APIRouter

from app.preview import WINDOW_LEVEL_RANGE, WINDOW_PRESETS, WINDOW_WIDTH_RANGE
from app.schemas import CharacteristicOut, TextureTypeOut, Vocabulary, WindowPresetOut
from model.clinical.labels import SCALES, TITLES, texture_type

router = APIRouter(prefix="/v1", tags=["viewer"])

VOCABULARY = Vocabulary(
    window_presets=[
        WindowPresetOut(name=name, width=w.width, level=w.level)
        for name, w in WINDOW_PRESETS.items()
    ],
    window_width_range=WINDOW_WIDTH_RANGE,
    window_level_range=WINDOW_LEVEL_RANGE,
    characteristics=[
        CharacteristicOut(name=name, title=TITLES[name], scale=list(scale))
        for name, scale in SCALES.items()
    ],
    texture_types=[TextureTypeOut(texture=t, type=texture_type(t)) for t in range(1, 6)],
)


@router.get("/vocabulary", response_model=Vocabulary)
async def vocabulary() -> Vocabulary:
    """Display window presets and bounds, the LIDC characteristics' scales, texture types."""
    return VOCABULARY
