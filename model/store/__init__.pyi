"""The public names of ``model.store``: read by ``lazy_loader`` and by type checkers."""

from .calibration import MatchThreshold, calibrate_match_threshold, patient_group
from .catalog import Catalog, ScanNodules, sha256_file, sqlite_engine, verify_version
from .layout import (
    CATALOG_FILE,
    CATALOGUE_CONTENTS,
    CURRENT,
    EMBEDDINGS_FILE,
    INDEX_FILE,
    MANIFEST,
    IndexLayout,
    LayoutError,
    holds_catalogue,
    new_version_name,
    write_json_atomic,
)
from .leases import ServingLease
from .manifest import Manifest
from .tables import Base, Build, Label, Nodule, NoduleRead, Scan
from .vector_index import (
    INDEX_TYPES,
    IndexType,
    build_index,
    default_params,
    save_index,
    set_search_params,
    set_search_threads,
)

__all__ = [
    "CATALOGUE_CONTENTS",
    "CATALOG_FILE",
    "CURRENT",
    "EMBEDDINGS_FILE",
    "INDEX_FILE",
    "INDEX_TYPES",
    "MANIFEST",
    "Base",
    "Build",
    "Catalog",
    "IndexLayout",
    "IndexType",
    "Label",
    "LayoutError",
    "Manifest",
    "MatchThreshold",
    "Nodule",
    "NoduleRead",
    "Scan",
    "ScanNodules",
    "ServingLease",
    "build_index",
    "calibrate_match_threshold",
    "default_params",
    "holds_catalogue",
    "new_version_name",
    "patient_group",
    "save_index",
    "set_search_params",
    "set_search_threads",
    "sha256_file",
    "sqlite_engine",
    "verify_version",
    "write_json_atomic",
]
