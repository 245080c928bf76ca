"""CT in and out, and nothing else: geometry, volumes, readers, DICOMweb, one door to a scan.

The readers of MetaImage, NIfTI, DICOM folders and DICOMweb, the PACS's address (``pacs``), and
``open``, the one door that turns an address into a volume source.

Imports no other wing of ``model``.

Its public names are re-exported here and load on first use (``lazy_loader``; the names are
in ``__init__.pyi``), so importing one light module of the wing never imports the heavy ones.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
