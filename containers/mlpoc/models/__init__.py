"""Models: the registry, run records, held-out metrics, artifacts and serving a version with
onnxruntime."""
