"""Collection with action selection: the episode loop, workcells, and their driver."""
