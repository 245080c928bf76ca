"""The catalogue store: SQLite tables, the FAISS index, the versioned layout."""
