"""Data: audio reading and validation, manifests, batching, the demo corpus."""
