"""`flywheel export CHECKPOINT OUT`: a policy, reward classifier or value model (estimator) that
loads without Flywheel. CHECKPOINT is a checkpoint folder, or a run folder (its latest loadable
checkpoint). OUT (new, or an empty folder) gets model.safetensors (the weights), config.json
(kind, architecture, cameras, image size, state and action sizes, unit, normalization, prompt
hashing and prompts) and flywheel_model.py, a loader that imports only torch, numpy and
safetensors. Run an exported policy on an observation dict (LeRobot's feature names):

    import sys
    import numpy as np

    sys.path.insert(0, "exported")                 # OUT: flywheel_model.py is in it
    from flywheel_model import load_exported

    policy = load_exported("exported")             # policy.config: its config.json
    print(policy.config["inputs"], policy.config["unit"])
    frame = np.zeros((480, 640, 3), np.uint8)      # a camera's RGB image, any size
    observation = {key: frame for key in policy.config["inputs"]["cameras"]}
    observation["observation.state"] = np.zeros(6, np.float32)  # in config["unit"]
    observation["task"] = policy.config["prompt"]["positive"]   # optional: prompt.default
    chunk = policy.predict(observation)            # chunk_size x action_dim, same unit
    for action in chunk[: policy.config["n_action_steps"]]:
        print(action)                              # send to the arm, then predict again

A classifier's `predict` gives the success probability (`.threshold` decides); a value model's
the value (kai0 also takes `history=`, the episode's first observation; recap a `task`).
`python OUT/flywheel_model.py OUT` loads the model and runs it once.

The export loads the checkpoint as Flywheel does, writes everything into `OUT.tmp-XXXXXXXX`
beside OUT, loads it back with the exported loader and checks that its outputs equal the
checkpoint's on random inputs before renaming it to OUT: a failed export leaves no OUT.
Refused in one line (exit 2): a path that is no checkpoint or run folder, a checkpoint of
another kind (hilserl, selector), an OUT that is not empty. Also `python -m pipelines.export`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from pipelines.classifier.config import KIND as CLASSIFIER_KIND
from pipelines.classifier.model import load_checkpoint as load_classifier
from pipelines.dataset import DatasetError
from pipelines.dataset.atomic import fsync_path, make_folders
from pipelines.dataset.errors import one_line
from pipelines.estimator.config import KIND as ESTIMATOR_KIND
from pipelines.estimator.model import load_checkpoint as load_estimator
from pipelines.evaluation.sources import resolve_prompt
from pipelines.policy.config import KIND as POLICY_KIND
from pipelines.policy.model import ChunkPolicy, PolicyConfig
from pipelines.runtime import exported
from pipelines.runtime.checkpoints import load_state, read_meta, resolve_checkpoint
from pipelines.runtime.cli import HelpFormatter, Job, job_main
from pipelines.runtime.cluster import check_job_output, exit_process
from pipelines.runtime.flags import FlagConfig, flag

HASHING = (
    "lowercase words ([a-z0-9]+); a word's id is 1 + (its UTF-8's BLAKE2b digest of 8 bytes, "
    "little-endian) mod (vocab - 1), 0 pads; the prompt is the mean of its words' embeddings"
)
LOADER_FILE = "flywheel_model.py"
DEFAULT_UNIT = "degrees"  # Flywheel's one unit for joints today, unless the checkpoint says


@dataclass
class ExportConfig(FlagConfig):
    checkpoint: str = flag(
        help="a checkpoint folder of train-policy, train-classifier or train-estimator, or a "
        "run folder (its latest loadable checkpoint)",
        positional=True,
    )
    out: str = flag(help="the exported model's folder (new, or empty)", positional=True)


@dataclass
class Exported:
    """What one kind's exporter gives: the config, the weights and the checkpoint's model as a
    function of the exported module's inputs (to check the export against)."""

    config: dict
    weights: dict[str, torch.Tensor]
    reference: object  # (*tensors) -> tensor: what the exported module must compute


@dataclass
class ExportResult:
    out: Path
    kind: str
    checkpoint: Path
    step: int | None
    parameters: int
    largest_difference: float


# --------------------------------------------------------------------------- per kind


def _common(kind: str, path: Path, meta: dict, architecture: str, model: dict) -> dict:
    try:
        version = importlib.metadata.version("robot-flywheel")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "format": exported.FORMAT,
        "format_version": exported.FORMAT_VERSION,
        "kind": kind,
        "architecture": architecture,
        "model": model,
        "inputs": {
            "cameras": list(model["cameras"]),
            "image_size": int(model["image_size"]),
            "image": "H x W x 3 uint8 RGB per camera, resized to image_size x image_size "
            "(area averaging, OpenCV's INTER_AREA)",
        },
        "source": {
            "checkpoint": str(path.resolve()),
            "step": meta.get("step"),
            "dataset": meta.get("dataset"),
            "flywheel": version,
        },
    }


def _state_input(config: dict, meta: dict, dim: int) -> None:
    config["inputs"]["state"] = {"key": exported.STATE, "dim": dim}
    config["unit"] = meta.get("unit", DEFAULT_UNIT)


def _prompt(vocab: int, **texts) -> dict:
    return {"vocab": vocab, "hashing": HASHING, **texts}


def export_policy(path: Path, meta: dict) -> Exported:
    model = ChunkPolicy(PolicyConfig(**meta["model"]))
    model.load_state_dict(load_state(path)["model"])
    c = model.config
    default, bare = resolve_prompt(None, meta)
    labeled = {}
    for which in ("positive", "negative"):
        try:
            labeled[which] = resolve_prompt(which, meta)[0]
        except DatasetError:  # a plain BC policy's tasks carry no labels
            labeled[which] = None
    config = _common(POLICY_KIND, path, meta, "ChunkPolicy", c.to_dict())
    _state_input(config, meta, c.state_dim)
    config["inputs"]["task"] = "the prompt text (default: prompt.default)"
    config["outputs"] = {
        "action": [c.chunk_size, c.action_dim],
        "action_frame": c.action_frame,
        "meaning": "the next chunk_size actions (fps apart), in the unit of the state",
    }
    config["normalization"] = meta.get("normalization")
    config["prompt"] = _prompt(
        c.prompt_vocab,
        default=default,
        bare=bare,
        **labeled,
        conditioning=meta.get("conditioning"),
        tasks=list(meta["tasks"].values()),
    )
    config["n_action_steps"] = int(meta.get("n_action_steps", 5))
    config["fps"] = meta["env"]["fps"]
    return Exported(config, model.state_dict(), model.eval().predict)


def export_classifier(path: Path, meta: dict) -> Exported:
    model, c, meta = load_classifier(path)
    config = _common(CLASSIFIER_KIND, path, meta, "RewardClassifier", c.to_dict())
    config["outputs"] = {"success_probability": "sigmoid of the classifier's logit"}
    config["threshold"] = float(meta.get("threshold", 0.5))
    config["threshold_rule"] = meta.get("threshold_rule", "default 0.5")
    config["name"] = meta.get("name", "classifier")
    return Exported(config, model.state_dict(), model)


def export_estimator(path: Path, meta: dict) -> Exported:
    model, c, _ = load_estimator(path)
    config = _common(ESTIMATOR_KIND, path, meta, f"AdvantageEstimator ({c.variant})", c.to_dict())
    _state_input(config, meta, c.state_dim)
    if c.variant == "kai0":
        config["inputs"]["history"] = "the observation of an earlier frame (the episode's first)"
    ranges = {"kai0": "progress from history to now, in [-1, 1]", "pi06": "progress, in [-1, 1]"}
    config["outputs"] = {"value": ranges.get(c.variant, "V in [-1, 0] (0: success now)")}
    if c.distributional:
        recap = meta.get("recap", {})
        config["inputs"]["task"] = "the frame's task text"
        config["normalization"] = {"state": recap.get("state_normalization")}
        config["prompt"] = _prompt(c.prompt_vocab, tasks=sorted(recap.get("t_max", {})))
        config["recap"] = {k: recap[k] for k in ("c_fail_coef", "t_max", "bins") if k in recap}
    else:
        config["normalization"] = {"state": f"state / {c.state_scale}"}
    return Exported(config, model.state_dict(), model)


EXPORTERS = {
    POLICY_KIND: export_policy,
    CLASSIFIER_KIND: export_classifier,
    ESTIMATOR_KIND: export_estimator,
}


# --------------------------------------------------------------------------- the job


def find_checkpoint(source: str) -> tuple[Path, str]:
    """(checkpoint folder, kind) of a checkpoint or run folder; one-line DatasetErrors."""
    path = Path(source)
    if not path.is_dir():
        raise DatasetError(f"{source}: no such checkpoint or run folder")
    path, kind = resolve_checkpoint(source)
    if kind not in EXPORTERS:
        raise DatasetError(
            f"{source}: a {kind} checkpoint; flywheel export exports {', '.join(EXPORTERS)} "
            "checkpoints"
        )
    return path, kind


def check_out(out: str) -> Path:
    path = Path(out)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise DatasetError(f"{out}: exists and is not an empty folder (it is never overwritten)")
    return path


def write_export(folder: Path, result: Exported) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in result.weights.items()}
    save_file(weights, folder / exported.WEIGHTS_FILE, metadata={"format": "pt"})
    (folder / exported.CONFIG_FILE).write_text(json.dumps(result.config, indent=2) + "\n")
    shutil.copyfile(exported.__file__, folder / LOADER_FILE)
    for name in (exported.WEIGHTS_FILE, exported.CONFIG_FILE, LOADER_FILE):
        fsync_path(folder / name)
    fsync_path(folder)


def check_export(folder: Path, result: Exported) -> float:
    """The largest difference between the exported model's outputs and the checkpoint's on
    random inputs; a DatasetError if they differ (or if it does not load)."""
    try:
        model = exported.load_exported(folder)
    except ValueError as e:
        raise DatasetError(f"the exported model does not load back: {e}") from None
    inputs = model.example_inputs()
    got = model.run(*inputs)
    with torch.inference_mode():
        want = result.reference(*(torch.from_numpy(a) for a in inputs)).float().numpy()
    difference = float(np.max(np.abs(got - want))) if got.shape == want.shape else np.inf
    if not difference <= 1e-5 * max(1.0, float(np.max(np.abs(want)))):
        raise DatasetError(
            f"the exported {result.config['kind']} computes other outputs than the checkpoint "
            f"(largest difference {difference:.3g}): pipelines/runtime/exported.py has drifted "
            "from the model's code"
        )
    return difference


def run(cfg: ExportConfig) -> ExportResult:
    check_job_output(cfg.out, "OUT")
    path, kind = find_checkpoint(cfg.checkpoint)
    out = check_out(cfg.out)
    meta = read_meta(path, kind)
    try:
        result = EXPORTERS[kind](path, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: incomplete {kind} checkpoint ({one_line(e)})") from None
    except RuntimeError as e:  # load_state_dict: the weights do not fit the config
        raise DatasetError(f"{path}: the weights do not fit its config ({one_line(e)})") from None
    make_folders(out.parent)
    build = out.parent / f"{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    try:
        write_export(build, result)
        difference = check_export(build, result)
        try:
            os.rename(build, out)  # onto an empty folder too
        except OSError as e:
            raise DatasetError(f"{out}: cannot put the export in place ({one_line(e)})") from e
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    parameters = sum(v.numel() for v in result.weights.values() if v.is_floating_point())
    return ExportResult(out, kind, path, meta.get("step"), parameters, difference)


def report(cfg: ExportConfig, result: ExportResult) -> list[str]:
    step = f" (step {result.step})" if result.step is not None else ""
    return [
        f"Exported the {result.kind} {result.checkpoint}{step} to {result.out}: "
        f"{exported.WEIGHTS_FILE} ({result.parameters:,} weights), {exported.CONFIG_FILE}, "
        f"{LOADER_FILE}; its outputs equal the checkpoint's (largest difference "
        f"{result.largest_difference:.2g})",
        f"Without Flywheel: python {result.out / LOADER_FILE} {result.out}",
    ]


class ExampleHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """--help keeps the usage example's lines (the epilog) as they are."""


JOB = Job("export", __doc__, ExportConfig, run, report)


def build_parser(prog: str = "flywheel export") -> argparse.ArgumentParser:
    """The Job's parser, with the docstring's usage example below the options."""
    parser = JOB.build_parser(prog)
    parser.formatter_class = ExampleHelpFormatter
    parser.epilog = "example:\n\n" + __doc__.split("\n\n", 1)[1].split("\n\nA classifier")[0]
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    prog = prog or "flywheel export"
    return job_main(argv, prog, build_parser(prog), ExportConfig, run, report)


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.export"))
