"""The network and the search vector made from it.

Architecture, loss, model card, checkpoints, the embedder, and the measured and learned blocks of
the vector (``profile``, ``search_space``, ``query``).

Imports ``model.ct`` and ``model.preprocessing``; never ``model.clinical`` or ``model.store``.

Its public names are re-exported here and load on first use (``lazy_loader``; the names are
in ``__init__.pyi``), so importing one light module of the wing never imports the heavy ones.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
