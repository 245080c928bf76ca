"""OHIF Viewer served by the project, with the "Similar nodules" panel (docs/ohif.md).

``nodule-ohif fetch`` unpacks the pinned OHIF bundle (``bundle``); ``nodule-ohif serve`` serves
it at the root of its own port with same-origin proxies to the PACS's DICOMweb (reads only) and
to the nodule-search API (``server``, ``proxy``), and the panel's ES modules (``static/``).
"""
