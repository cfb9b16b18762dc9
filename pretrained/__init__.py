"""Shipped weights of the learned optimizer (data only; see README.md here)."""
