"""gaitcam: real-time person re-identification from 3-D skeleton gait (SGE-LA)."""

__version__ = "0.1.0"
