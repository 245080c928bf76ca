"""HTTP routes; thin: validation here, logic in ``app.retrieval``."""
