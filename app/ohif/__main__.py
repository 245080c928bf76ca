"""``python -m app.ohif`` is ``nodule-ohif``."""

from app.ohif.server import main

raise SystemExit(main())
