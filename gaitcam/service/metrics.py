"""Prometheus metrics, read from the session and its live run at each scrape (every name
starts with `gaitcam_`)."""
from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from gaitcam.session import LiveRun, Session


class SessionCollector(Collector):
    def __init__(self, session: Session, run: LiveRun | None) -> None:
        self.session, self.run = session, run
        self._started = time.monotonic()
        self._last: tuple[float, int] | None = None  # (when, frames) at the previous scrape

    def collect(self) -> Iterator[Metric]:
        bus = self.session.bus
        yield CounterMetricFamily("gaitcam_events", "Events published", value=bus.published)
        yield CounterMetricFamily("gaitcam_events_dropped", "Events dropped because a subscriber fell behind",
                                  value=bus.dropped)
        yield GaugeMetricFamily("gaitcam_event_subscribers", "Event subscribers connected now", value=bus.subscribers)
        yield GaugeMetricFamily("gaitcam_enrolled_people", "People in the gallery", value=len(self.session.index))
        if self.run is None:
            return
        p = self.run.pipeline
        stats, enc = p.stats, p.encoder_stats
        now = time.monotonic()
        frames = p.frames_read
        since, before = self._last or (self._started, 0)
        self._last = (now, frames)
        yield GaugeMetricFamily("gaitcam_fps", "Frames read per second since the previous scrape",
                                value=(frames - before) / max(now - since, 1e-6))
        yield CounterMetricFamily("gaitcam_frames", "Frames read from the source", value=frames)
        yield GaugeMetricFamily("gaitcam_queue_depth", "Frames captured, waiting to be processed", value=p.queue_depth)
        yield CounterMetricFamily("gaitcam_windows", "Windows encoded", value=enc.encoded)
        yield SummaryMetricFamily("gaitcam_encode_latency_seconds", "Time to encode one batch of windows",
                                  count_value=enc.batches, sum_value=enc.seconds)
        yield CounterMetricFamily("gaitcam_decisions", "Identity decisions published", value=self.run.decisions)
        yield CounterMetricFamily("gaitcam_dropped", "Frames and windows dropped by full queues",
                                  value=p.frames_dropped + enc.dropped)
        yield GaugeMetricFamily("gaitcam_stride", "Frames between a track's windows now (widens under load)",
                                value=p.current_stride)
        if p.control is not None:  # a fixed stride measures no lag: no gauge rather than a false 0
            yield GaugeMetricFamily("gaitcam_lag_seconds", "Frame read to window encoded, p95 of the last 0.5 s",
                                    value=p.control.lag)
            yield GaugeMetricFamily("gaitcam_falling_behind", "1 while even the widest stride cannot keep up",
                                    value=int(p.control.behind))
            yield CounterMetricFamily("gaitcam_behind", "Times even the widest stride fell behind",
                                      value=p.control.episodes)
        yield CounterMetricFamily("gaitcam_tracks", "People tracked", value=stats.tracks)
        yield GaugeMetricFamily("gaitcam_tracks_in_view", "Tracks in view now", value=len(self.run.tracks()))


def registry(session: Session, run: LiveRun | None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(SessionCollector(session, run))
    return reg
