"""Skeletons: joint layouts, retargeting to the canonical layout, normalisation, windows."""
