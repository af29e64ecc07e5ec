"""`primus report RUN_DIR`: plots and a text summary of a finished (or running) training run."""
