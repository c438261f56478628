"""The `aimesh` command line: one module per command group."""
