"""The leaf layer: the one settings model, infrastructure errors and child-process plumbing."""
