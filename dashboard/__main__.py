"""`python -m dashboard`: the same as `aimesh dashboard`."""

from dashboard.cli import main

main()
