"""Hydra sweeper plugin: resumable Optuna (>= 4) studies over dars runs. The logic is in dars/tune/."""
