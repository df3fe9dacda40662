"""Skeleton sources side by side, each one file behind `base.Source`."""
