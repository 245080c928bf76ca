"""What a radiologist reads and keeps of a search.

Measurements, masks, readers' labels, the vote, the DICOM SR and SEG, and the report that
assembles them.

Imports ``model.ct``, ``model.nn`` and ``model.preprocessing``; never ``model.store``.

Its public names are re-exported here and load on first use (``lazy_loader``; the names are
in ``__init__.pyi``), so importing one light module of the wing never imports the heavy ones.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
