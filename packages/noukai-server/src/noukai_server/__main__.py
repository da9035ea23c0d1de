"""`python -m noukai_server` is the `noukai` command."""

from noukai_server.cli import main

main()
