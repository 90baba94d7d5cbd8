"""Flywheel's online side: Ray actors around robots, cameras and simulators."""
