"""The demo's folder and what its steps have recorded in `demo.json` (written atomically)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.dataset import atomic_write_json
from pipelines.demo_steps.config import DemoConfig


class DemoError(Exception):
    """A step's inputs are missing (run the step that makes them first), or `--out` is not a
    demo's folder."""


@dataclass
class Demo:
    """The demo's folder (`--out`) and what its steps have recorded in `demo.json`."""

    out: Path
    config: DemoConfig = field(default_factory=DemoConfig)
    state: dict = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)

    @property
    def dataset(self) -> Path:
        return self.out / "dataset"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    @property
    def outcomes_csv(self) -> Path:
        """Which episodes succeeded, one line each (step 2 writes it)."""
        return self.out / "outcomes.csv"

    @property
    def state_path(self) -> Path:
        return self.out / "demo.json"

    def load(self) -> None:
        if self.state_path.exists():
            try:
                self.state = json.loads(self.state_path.read_text())
            except ValueError as e:
                raise DemoError(f"{self.state_path}: not JSON ({e}); rerun the whole demo") from e
            if not isinstance(self.state, dict):
                raise DemoError(f"{self.state_path}: not the demo's state; rerun the whole demo")

    def start_over(self) -> None:
        """A whole demo starts from an empty folder: it removes what an earlier demo made there
        (`dataset/`, `runs/`, `outcomes.csv`, `demo.json`) and nothing else; a folder with
        other things in it and no `demo.json` is not a demo's, and is refused."""
        if self.out.exists() and not self.out.is_dir():
            raise DemoError(f"{self.out}: --out is a file, not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and not self.state_path.exists():
            raise DemoError(
                f"{self.out}: --out holds files and no demo.json (not a demo's folder); "
                "name an empty or new folder"
            )
        for made in (self.dataset, self.runs):
            if made.is_dir():
                shutil.rmtree(made)
        self.outcomes_csv.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)
        self.state = {}

    def record(self, step: int, **values) -> None:
        plain = json.dumps(values, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        self.state[str(step)] = json.loads(plain)
        atomic_write_json(self.state_path, self.state)

    def need(self, step: int) -> dict:
        if str(step) not in self.state:
            title = f" ({self.titles[step - 1]})" if len(self.titles) >= step else ""
            raise DemoError(
                f"{self.state_path}: step {step}{title} has not run here; run "
                f"`flywheel demo --stage {step} --out {self.out}` first (or the whole demo)"
            )
        return self.state[str(step)]
