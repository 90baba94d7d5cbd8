"""The advantage estimator family: kai0/pi06 progress from `stage_progress_gt`, and RECAP's
value from episode outcomes (`recap`).

config     EstimatorTrainConfig (nested run section), EstimateConfig, the checkpoint KIND
data       decoding, training pairs and value batches, inference queries, `check_dataset`,
           the state's normalization
value      the recap value's math: bins, two-hot targets, V, N-step advantages, metrics
recap      what recap takes from a dataset: outcomes, tasks, T_max, targets, returns
model      the network and `load_checkpoint`
training   `flywheel train-estimator`: the Ray Train job (`run`)
inference  `flywheel estimate`: the Ray Data pass (`run`)
manifest   what an estimate's output folder was computed from (rerun: resume or recompute)
"""
