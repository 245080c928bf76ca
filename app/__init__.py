"""nodule-search HTTP service (FastAPI). Never imports ``indexer``."""
