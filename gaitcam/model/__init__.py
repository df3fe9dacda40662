"""The SGE-LA model: network (sgela.py), training, weights on disk, and the AGE encoder."""
