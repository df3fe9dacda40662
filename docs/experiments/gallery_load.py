"""How long a camera takes to load (and recalibrate) a gallery of P people: what every change
at another camera costs it. Synthetic walks (5 per person, random unit descriptors) beside the
shipped matcher's cohort of strangers; the time of `GalleryIndex` (projection, levels,
leave-one-person-out calibration).

    PYTHONPATH=. .venv/bin/python docs/experiments/gallery_load.py 50 100 200 1000
"""
import sys
import time

import numpy as np

from gaitcam.config import WEIGHTS_DIR
from gaitcam.identity.matcher import GalleryIndex, MatcherParams

params = MatcherParams.load(WEIGHTS_DIR / "sgela.matcher")
rng = np.random.default_rng(0)
dim = params.projection.shape[0]
for people in map(int, sys.argv[1:] or ["50", "100", "200"]):
    names = [f"p{i}" for i in range(people) for _ in range(5)]
    descriptors = rng.standard_normal((len(names), dim)).astype(np.float32)
    began = time.perf_counter()
    GalleryIndex(names, descriptors, params)
    print(f"{people} people ({len(names)} walks): {time.perf_counter() - began:.2f} s", flush=True)
