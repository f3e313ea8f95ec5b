"""cxrgen: chest X-ray generative modelling pipeline."""
