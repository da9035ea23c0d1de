"""Defaults shared by the CLI and the server, in a module light enough to import anywhere."""

DEFAULT_DATA_DIR = ".noukai"
DEV_ORG = "dev"
DEV_PROJECT = "main"
