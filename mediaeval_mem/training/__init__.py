"""Training and evaluation: batches from the feature cache, the paper's recipe, the organisers' metrics."""
