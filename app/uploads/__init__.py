"""Uploads: body limits, the forms, the parser process and what it runs.

``limits`` (every request's body limit), ``forms`` (the upload routes' fields, received into
the parser), ``parser`` (one limited subprocess per upload), ``worker`` (that subprocess),
``parse`` (the untrusted file to a patch, in the worker). Nothing is imported here: the worker
starts through this package and must import nothing before its limits hold.
"""
