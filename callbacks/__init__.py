"""Callbacks any method can use: evaluation metrics, panels, training guards (see README)."""
