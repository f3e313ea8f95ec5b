"""Noise-aware classifier p(y | x_t, t) for classifier guidance (and, at t = 0, clean images)."""
