"""The offline batch job (``nodule-index``): synthetic data, labels, training, index builds."""
