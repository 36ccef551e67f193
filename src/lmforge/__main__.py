from lmforge.cli import entry

entry()
