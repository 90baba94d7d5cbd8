"""The reward classifier: success labels, the model, its training and what it exports.

    labels   success-frames CSV and next.reward sources, pure and strict (one-line errors)
    data     decoding episodes, class-balanced batches, random-shift augmentation
    model    the network, `load_reward_model` (scoring) and `load_feature_extractor` (the
             frozen image encoder HIL-SERL uses)
    metrics  accuracy, precision, recall, threshold choice, precision-recall figure
    config   ClassifierTrainConfig (nested: run section) and the checkpoint KIND
    training the Ray Train job behind `flywheel train-classifier` (`run`)

`serving.reward` serves it; `serving.client` calls it.
"""
