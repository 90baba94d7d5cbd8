"""Policy evaluation in the simulator: paired seeds, intervals, tests."""
