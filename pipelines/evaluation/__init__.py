"""Policies rolled out in the simulator, scored on paired seeds (`flywheel eval-policy`'s library).

config    EvalConfig, ArmOptions, EnvSettings (the simulator's settings), parse_arm
sources   where an arm comes from: controllers, checkpoints (register_loader, load_source)
episodes  one arm's episodes: score_episode, run_group (the Ray task body)
stats     Wilson intervals, McNemar's exact test
report    ArmResult, EvalResult, compare, summary_lines, the MLflow run
driver    run(EvalConfig) -> EvalResult
"""

from pipelines.evaluation.config import (
    CONTROLLER_PREFIX,
    PROMPT_CHOICES,
    ArmOptions,
    EnvSettings,
    EvalConfig,
    parse_arm,
)
from pipelines.evaluation.driver import run, settings_for
from pipelines.evaluation.episodes import EpisodeResult, run_group, score_episode
from pipelines.evaluation.report import ArmResult, EvalResult, compare, summary_lines
from pipelines.evaluation.sources import (
    LOADERS,
    LoadedPolicy,
    Policy,
    load_source,
    register_loader,
    resolve_prompt,
)

__all__ = [
    "CONTROLLER_PREFIX",
    "LOADERS",
    "PROMPT_CHOICES",
    "ArmOptions",
    "ArmResult",
    "EnvSettings",
    "EpisodeResult",
    "EvalConfig",
    "EvalResult",
    "LoadedPolicy",
    "Policy",
    "compare",
    "load_source",
    "parse_arm",
    "register_loader",
    "resolve_prompt",
    "run",
    "run_group",
    "score_episode",
    "settings_for",
    "summary_lines",
]
