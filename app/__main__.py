"""``python -m app`` is ``nodule-api``."""

from app.main import main

raise SystemExit(main())
