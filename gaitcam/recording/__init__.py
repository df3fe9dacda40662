"""Recording files: KGBD walks, the original SGE-LA .npy windows, and reading any of them."""
