"""``nodule-index bootstrap``: make sure a catalogue exists (what the compose ``indexer`` runs).

With no ``INDEX_DIR/CURRENT`` (or with ``--rebuild``): generate the synthetic set when the data
folder holds no LUNA16 scans, train the model (or reuse a matching one), build and verify the
catalogue. With a catalogue present and no ``--rebuild`` it does nothing and exits 0.
"""
