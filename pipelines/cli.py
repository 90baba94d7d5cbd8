# PYTHON_ARGCOMPLETE_OK (register-python-argcomplete looks for this line: `complete()` below)
"""The `flywheel` command: one subcommand per job, each also `python -m pipelines.<job>`."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys

from pipelines.runtime.cluster import exit_process

# subcommand -> (module, one-line help)
COMMANDS = {
    "demo": ("pipelines.demo", "build a small dataset and run the flywheel over it"),
    "synth": ("pipelines.synth", "simulated SO-101 episodes as a LeRobot v2.1/v3.0 dataset"),
    "outcomes": ("pipelines.outcomes", "each episode's success flag (episode_success), in place"),
    "label": ("pipelines.label", "Stage-0 GT labeling: progress -> advantage -> task_index"),
    "train-estimator": ("pipelines.train_estimator", "Stage 1: train the advantage estimator"),
    "estimate": ("pipelines.estimate", "Stage 2: label a dataset with the estimator"),
    "hilserl": ("pipelines.hilserl", "HIL-SERL on Ray: collectors, one learner, a Q monitor"),
    "train-classifier": ("pipelines.train_classifier", "train the reward classifier (Ray Train)"),
    "serve-reward": ("serving.reward", "serve the reward classifier (Ray Serve, HTTP + handle)"),
    "train-policy": ("pipelines.train_policy", "Stage 3: train an AWBC/BC policy"),
    "eval-policy": ("pipelines.eval_policy", "success rates of policies in the simulator"),
    "collect": (
        "pipelines.collect",
        "collection with critical-state approval, logged propensities",
    ),
    "train-selector": ("pipelines.train_selector", "the learned selector: P(approve | s, a)"),
    "propensity-report": ("pipelines.propensity_report", "seed 000's analyses of a collect log"),
    "sweep": ("pipelines.sweep", "Ray Tune sweeps: awbc, reward-threshold, hilserl"),
    "robot": ("pipelines.robot", "the SO-101 arms: ping, calibrate, teleop, emulate"),
    "inspect": ("pipelines.inspect", "describe a LeRobot dataset and what its folder lacks"),
    "view": ("pipelines.view", "one episode as a PNG: frames, value curve, advantage labels"),
    "convert": ("pipelines.convert", "a LeRobot dataset in the other format (v2.1 <-> v3.0)"),
    "export": ("pipelines.export", "a policy, classifier or value model for use without Flywheel"),
}


def version() -> str:
    """The installed distribution's version (robot-flywheel)."""
    try:
        return importlib.metadata.version("robot-flywheel")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown (not installed)"


def usage() -> str:
    lines = ["usage: flywheel [--version] <command> [options]", "", "commands:"]
    lines += [f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append("\n`flywheel <command> --help` describes a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"flywheel {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"flywheel: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest, prog=f"flywheel {name}")


def complete(output_stream=None, exit_method=os._exit) -> None:
    """Shell completion (argcomplete), when the shell asks for it (`_ARGCOMPLETE` set, after
    `eval "$(register-python-argcomplete flywheel)"`): the commands, and the flags of the one
    being completed, whose module alone is imported. Prints the completions and exits; without
    `_ARGCOMPLETE` (or without argcomplete installed) it does nothing."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    root = argparse.ArgumentParser(prog="flywheel")
    root.add_argument("--version", action="version", version=version())
    commands = root.add_subparsers(dest="command")
    line = os.environ.get("COMP_LINE", "")[: int(os.environ.get("COMP_POINT", "0") or 0)]
    words = line.split()
    for name, (_, text) in COMMANDS.items():
        commands.add_parser(name, help=text)
    typed = len(words) > 2 or (len(words) == 2 and line.endswith(" "))
    if typed and words[1] in COMMANDS:  # the command being completed: its own parser
        name = words[1]
        job = importlib.import_module(COMMANDS[name][0]).build_parser(f"flywheel {name}")
        job.format_usage()  # a JobParser adds --config and --print-config on first use
        commands.choices[name] = job
    argcomplete.autocomplete(root, output_stream=output_stream, exit_method=exit_method)


def run() -> None:
    """Console-script entry point."""
    complete()
    exit_process(main())


if __name__ == "__main__":
    run()
