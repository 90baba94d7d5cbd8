"""Flywheel's Ray Serve deployments."""
