"""`python -m noukai` is the `noukai` command."""

from noukai.cli import main

main()
