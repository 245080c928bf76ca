"""``python -m indexer`` is ``nodule-index``."""

from indexer.cli import main

raise SystemExit(main())
