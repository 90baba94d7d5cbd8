"""Flywheel's offline jobs: the LeRobot dataset layer and the pipelines that run over it.

Each job is `python -m pipelines.<job>` and a `flywheel <job>` subcommand.
"""
