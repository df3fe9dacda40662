"""The live stream, one stage per module, in data-flow order:

capture.py      the thread that owns the source (bounded queue, reopen on loss)
calibration.py  camera frame -> floor frame (file, sensor floor plane, or a floor fit)
tracker.py      stable app track ids (sensor ids mapped, or constant-velocity assignment)
resample.py     each track onto the encoder's 30 fps grid, never across a gap
ring.py         each track's last f frames, a window every `stride` frames
encode.py       the encoder thread: windows of all tracks, batched, to AGEs
stride.py       the live stride under load: wider while the encoder falls behind
pipeline.py     the wiring, and what the matcher and the view see of it
"""
