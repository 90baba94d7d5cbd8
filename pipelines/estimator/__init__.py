"""The advantage estimator family.

config     EstimatorTrainConfig (nested run section), EstimateConfig, the checkpoint KIND
data       decoding, training pairs, inference queries, `check_dataset`
model      the network and `load_checkpoint`
training   `flywheel train-estimator`: the Ray Train job (`run`)
inference  `flywheel estimate`: the Ray Data pass (`run`)
"""
