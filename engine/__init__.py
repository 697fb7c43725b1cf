"""The compute runtime and the model loop (workers, dispatch, training, model registry)."""
