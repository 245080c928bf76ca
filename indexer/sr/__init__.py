"""``nodule-index report``: a similar-case search at a point of a DICOM series, as a DICOM SR."""
