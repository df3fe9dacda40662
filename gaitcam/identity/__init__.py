"""Who is who: the enrolled gallery, the matcher that names tracks, and the open-set threshold.

recordings/tracks -> enrollment.py (evidence, templates) -> gallery.py (SQLite)
track evidence + gallery -> matcher.py (descriptors, distances, decisions) <- openset.py (threshold)
"""
