"""The shared kernel: the from-scratch network, dataset readers, model registry and settings.

Imports only numpy, pandas and pydantic, so the trainer, the API and the worker can all
build on it without pulling in each other.
"""
