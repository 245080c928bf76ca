"""Training of the FP-reduction network (``nodule-index train``)."""
