"""The evaluation's figures: the t-SNE map (the paper's Figure 2) and a query montage (Figure 3).

Both are drawn with matplotlib's Agg backend at a fixed size in pixels, so reports compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Figure objects, not pyplot: no global backend or figure registry to set at import, and
# savefig renders PNG with Agg whatever display the machine has.
from matplotlib.figure import Figure

#: t-SNE map: 9 x 8 inches at 100 dpi.
TSNE_SIZE_PX = (900, 800)
#: Montage: one row per query, a query column and 4 neighbour columns, each cell this large.
MONTAGE_CELL_PX = 180
MONTAGE_COLUMNS = 5
_DPI = 100

#: Colours of the 4-class labels (benign blue to malignant red) and of unlabelled nodules.
CLASS_COLOURS = {1: "#2c7bb6", 2: "#abd9e9", 4: "#fdae61", 5: "#d7191c"}
UNLABELLED_COLOUR = "#bdbdbd"


def tsne_png(
    map_xy: npt.NDArray[np.float64],
    label_4class: Sequence[int | None],
    out: Path,
    title: str,
) -> None:
    """The 2-D map, each nodule coloured by its 4-class malignancy label (grey: none)."""
    fig = Figure(figsize=(TSNE_SIZE_PX[0] / _DPI, TSNE_SIZE_PX[1] / _DPI), dpi=_DPI)
    ax = fig.add_subplot(1, 1, 1)
    labels = np.array([-1 if v is None else int(v) for v in label_4class])
    none = labels == -1
    ax.scatter(
        map_xy[none, 0],
        map_xy[none, 1],
        s=10,
        c=UNLABELLED_COLOUR,
        label=f"no label ({int(none.sum())})",
    )
    for rating, colour in CLASS_COLOURS.items():
        chosen = labels == rating
        ax.scatter(
            map_xy[chosen, 0],
            map_xy[chosen, 1],
            s=18,
            c=colour,
            edgecolors="black",
            linewidths=0.3,
            label=f"malignancy {rating} ({int(chosen.sum())})",
        )
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    fig.savefig(out, dpi=_DPI)


@dataclass(frozen=True)
class Panel:
    """One cell of the montage: the central axial slice of a patch and its caption."""

    slice_yx: npt.NDArray[np.float32]
    """Windowed patch values in [0, 1], (rows = y, columns = x)."""
    caption: str
    label_4class: int | None


def montage_png(rows: Sequence[Sequence[Panel]], out: Path, title: str) -> None:
    """Each row: a query then its nearest neighbours (frame colour: 4-class label)."""
    n = max(1, len(rows))
    width = MONTAGE_COLUMNS * MONTAGE_CELL_PX / _DPI
    height = n * MONTAGE_CELL_PX / _DPI
    fig = Figure(figsize=(width, height), dpi=_DPI)
    axes = fig.subplots(n, MONTAGE_COLUMNS, squeeze=False)
    for r in range(n):
        for c in range(MONTAGE_COLUMNS):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r >= len(rows) or c >= len(rows[r]):
                ax.axis("off")
                continue
            panel = rows[r][c]
            ax.imshow(panel.slice_yx, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            colour = CLASS_COLOURS.get(panel.label_4class or -1, UNLABELLED_COLOUR)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4 if c == 0 else 2.5)
            ax.set_title(panel.caption, fontsize=7, pad=2)
    fig.suptitle(title, fontsize=9)
    # Room for the title: half an inch whatever the number of rows.
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / height, wspace=0.05)
    fig.savefig(out, dpi=_DPI)
