"""A client on an edited copy of the small catalogue (another manifest, same vectors)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings
from model.store.layout import IndexLayout


@contextmanager
def serving_edited_copy(
    app_index: Path, synth_set: Path, tmp_path: Path, threshold: object
) -> Iterator[TestClient]:
    """A client on a copy of the catalogue with another manifest ``match_threshold``.

    ``None`` removes it, as in versions built before thresholds were recorded.
    """
    index = tmp_path / "index"
    shutil.copytree(app_index, index)
    version = IndexLayout(index).current() or ""
    path = IndexLayout(index).version_dir(version) / "manifest.json"
    manifest = json.loads(path.read_text())
    if threshold is None:
        del manifest["match_threshold"]
    else:
        manifest["match_threshold"] = threshold
    path.write_text(json.dumps(manifest))
    settings = AppSettings(index_dir=index, data_dir=synth_set, device="cpu")
    with TestClient(create_app(settings)) as test_client:
        yield test_client
