"""The base layer: config registry, errors, files, devices, progress, processes, hooks."""
