"""Training and inference. The only package that imports TensorFlow (filled in by the
trainer issue)."""
