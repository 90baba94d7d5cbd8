"""`flywheel demo`'s steps: the whole flywheel once, on a small simulated dataset.

config    DemoConfig: the demo's flags, checked before anything is touched
state     Demo: the demo's folder and `demo.json` (what each step recorded), DemoError
offline   steps 1-5: synthesize, record outcomes, learn the value (RECAP), estimate and label
          (checked against true progress), AWBC against BC
online    steps 6-8: the served reward classifier, HIL-SERL with it, a threshold sweep
driver    STEPS, run(config) and the summary table
"""

from pipelines.demo_steps.config import DemoConfig
from pipelines.demo_steps.driver import STEPS, DemoResult, run, summary_table
from pipelines.demo_steps.state import Demo, DemoError

__all__ = ["STEPS", "Demo", "DemoConfig", "DemoError", "DemoResult", "run", "summary_table"]
