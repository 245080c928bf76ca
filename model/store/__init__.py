"""The catalogue on disk.

Version layout and leases, the typed ``Manifest``, the SQLite tables, the FAISS index and the
calibrated close-match threshold.

Imports ``model.ct`` only (a ``dicomweb:`` address); never ``model.nn`` or ``model.clinical``.

Its public names are re-exported here and load on first use (``lazy_loader``; the names are
in ``__init__.pyi``), so importing one light module of the wing never imports the heavy ones.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
