"""Evaluation of counterfactuals: detection, localisation, ground truth, severity, spectra."""
