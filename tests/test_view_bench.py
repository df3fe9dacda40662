"""The view benchmark: times redraws of a crowd that stays in view, and counts capture losses."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

from gaitcam.ui.bench import CrowdSource, bench_view, project  # noqa: E402


def test_crowd_keeps_everyone_in_view_and_in_the_image():
    source = CrowdSource(people=7, fps=1000.0, image=True, seconds=1.0)
    source.open()
    frames = [source.read() for _ in range(1300)]  # more than the crowd holds: it plays round
    assert all(len(f.bodies) == 7 for f in frames)
    first, again = {b.track for b in frames[0].bodies}, {b.track for b in frames[1100].bodies}
    assert len(first) == 7 and not first & again  # the second round's people are new people
    assert np.all(np.diff([f.time for f in frames]) > 0)
    points = frames[0].extras["image_points"]
    assert points.shape == (7, 20, 2) and frames[0].image.shape == (480, 640, 3)
    inside = (points >= 0).all(axis=2) & (points[..., 0] < 640) & (points[..., 1] < 480)
    assert inside.mean() > 0.9


def test_projection_is_a_pinhole_with_kinect_axes():
    # Straight ahead is the image centre; the sensor's left (+x) is the image's left, up is up.
    np.testing.assert_allclose(project(np.array([0.0, 0.0, 2.0])), [320, 240])
    left_up = project(np.array([0.5, 0.5, 2.0]))
    assert left_up[0] < 320 and left_up[1] < 240


def test_bench_view_times_redraws_of_everyone():
    result = bench_view(people=3, fps=30.0, seconds=2.5)
    assert result["draws"] >= 10 and result["people_drawn_mean"] == 3.0
    assert 0 < result["draw_ms_p50"] <= result["draw_ms_p99"]
    assert result["frames"] >= 0.8 * result["expected_frames"] and result["windows"] > 0
    assert result["dropped"] == 0
