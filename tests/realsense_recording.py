"""Writes RealSense recordings with pyrealsense2's software device, for tests/test_realsense.py.

A recording is `n_frames` copies of one colour image with a depth image, as two aligned pinhole
streams (focal length FX, centred, no distortion), depth in millimetre units, 30 fps. The
SDK's recorder picks the container: pyrealsense2 2.59 (the pinned one) writes only ROS2 `.db3`;
2.55 and older write ROS1 `.bag`, which the RealSense Viewer and most existing recordings use.
The `.bag` the tests play is therefore written once, by this file run under 2.55, and kept
xz-compressed in tests/data (its frames are identical, so it shrinks from 2.1 MB to 0.4 MB):

    python3.11 -m venv /tmp/rs255 && /tmp/rs255/bin/pip install pyrealsense2==2.55.1.6486 numpy opencv-python-headless
    /tmp/rs255/bin/python tests/realsense_recording.py ../shared/data/media/messi5.jpg tests/data/messi-2.5m.bag
    xz -9 tests/data/messi-2.5m.bag

It imports nothing of gaitcam, so that it runs in such a bare environment.
"""
from __future__ import annotations

import sys

import numpy as np

DEPTH = 2.5  # metres: a person a few steps from the camera
FX = 400.0
FOOT_ROWS = 290  # no depth from this image row down (a hole, as on a dark floor)
N_FRAMES = 4


def depth_image(shape: tuple[int, ...]) -> np.ndarray:
    """The recordings' depth in metres: DEPTH everywhere but the hole from FOOT_ROWS down."""
    depth = np.full(shape[:2], DEPTH)
    depth[FOOT_ROWS:] = 0.0
    return depth


def intrinsics(rs, w: int, h: int):
    """The recording's pinhole camera: focal length FX, centred, no distortion."""
    k = rs.intrinsics()
    k.width, k.height, k.fx, k.fy, k.ppx, k.ppy = w, h, FX, FX, w / 2, h / 2
    k.model, k.coeffs = rs.distortion.none, [0.0] * 5
    return k


def write_recording(rs, path, image: np.ndarray, depth_m: np.ndarray, n_frames: int = N_FRAMES, fps: int = 30) -> None:
    """`n_frames` copies of (image, depth_m) recorded to `path` through the pyrealsense2 module `rs`."""
    h, w = image.shape[:2]
    device = rs.software_device()
    streams = {rs.stream.depth: (rs.format.z16, np.round(depth_m * 1000).astype(np.uint16)),
               rs.stream.color: (rs.format.bgr8, np.ascontiguousarray(image))}
    sensors, profiles, bpp = {}, {}, {}
    for uid, (kind, (fmt, pixels)) in enumerate(streams.items()):
        bpp[kind] = pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid, stream.fmt = kind, 0, uid, fmt
        stream.width, stream.height, stream.fps, stream.bpp = w, h, fps, bpp[kind]
        stream.intrinsics = intrinsics(rs, w, h)
        sensors[kind] = device.add_sensor(str(kind))
        profiles[kind] = sensors[kind].add_video_stream(stream)
    sensors[rs.stream.depth].add_read_only_option(rs.option.depth_units, 0.001)
    same_place = rs.extrinsics()
    same_place.rotation, same_place.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles[rs.stream.depth].register_extrinsics_to(profiles[rs.stream.color], same_place)
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(16)
    for kind, sensor in sensors.items():
        sensor.open(profiles[kind])
        sensor.start(queue)
    for n in range(n_frames):
        for kind, (_, pixels) in streams.items():
            frame = rs.software_video_frame()
            frame.pixels, frame.bpp, frame.stride = pixels, bpp[kind], w * bpp[kind]
            frame.timestamp, frame.domain, frame.frame_number = 1000.0 * n / fps, rs.timestamp_domain.hardware_clock, n
            frame.profile = profiles[kind].as_video_stream_profile()
            sensors[kind].on_video_frame(frame)
        while queue.poll_for_frame():
            pass
    for sensor in sensors.values():
        sensor.stop()
        sensor.close()
    del recorder  # finishes the file


if __name__ == "__main__":
    import cv2
    import pyrealsense2

    colour = cv2.imread(sys.argv[1])
    write_recording(pyrealsense2, sys.argv[2], colour, depth_image(colour.shape))
