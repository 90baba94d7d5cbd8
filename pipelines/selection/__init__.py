"""Action selection (seed 000): selectors, the approval model, propensities."""
