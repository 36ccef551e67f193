"""Inference: load a model (with adapters) and generate with the chat template."""
