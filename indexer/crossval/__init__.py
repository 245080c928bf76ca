"""``nodule-index crossval``: patient-grouped cross-validation of training recipes and vectors."""
