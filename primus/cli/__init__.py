"""Command line: `primus <command>`; each command lives in its own module."""
