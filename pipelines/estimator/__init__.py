"""The advantage estimator family: data, model, training and estimation."""
