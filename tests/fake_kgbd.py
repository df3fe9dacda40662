"""A small fake KGBD tree for the benchmarks' end-to-end tests."""
import numpy as np

from gaitcam.skeleton.layouts import KGBD


def write_fake_kgbd(root, people: int, walks: int, frames: int = 150, seed: int = 0) -> None:
    """PersonNNN/K.txt: each person a body of their own, walking on the spot with a sway of
    their own phase (5 s at 30 fps: enough for enrolment)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / 30.0
    for person in range(1, people + 1):
        body = rng.uniform(-0.4, 0.4, (1, 20, 3)) + [0.0, 0.0, 2.5]
        phase = rng.uniform(0, 6, (1, 20, 3))
        folder = root / "Data" / f"Person{person:03d}"
        folder.mkdir(parents=True)
        for walk in range(1, walks + 1):
            joints = body + 0.05 * np.sin(2 * np.pi * t + phase) + rng.normal(0, 0.003, (frames, 20, 3))
            lines = [f"{name};{x:.5f};{y:.5f};{z:.5f}" for frame in joints for name, (x, y, z) in zip(KGBD.joints, frame)]
            (folder / f"{walk}.txt").write_text("\n".join(lines) + "\n")
