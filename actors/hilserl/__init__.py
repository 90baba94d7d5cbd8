"""HIL-SERL's workers: collectors, the learner, the recorder, and their driver."""
