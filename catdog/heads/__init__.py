"""Classifiers on the stored features: fit, evaluate, the model folder, predict, explain."""
