"""Evaluation of a catalogue: the paper's Table 1 protocol, baselines, figures (``evaluate``)."""
