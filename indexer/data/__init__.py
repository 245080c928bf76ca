"""Everything that makes or reads a LUNA16-layout folder.

The synthetic set, real crops and VOIs, the folder's tables, its description, and the patches
cut from it.
"""
