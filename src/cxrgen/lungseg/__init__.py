"""Lung segmentation: masks of the right and left lung for data sets that ship none.

A small UNet (:mod:`.model`) learns the lung masks of a data set that has them (COVID-QU-Ex's
``lung masks/`` folders, or the phantoms'), each binary mask split into the patient's right
and left lung first (:mod:`.sides`), through the project's one training loop (:mod:`.train`);
:mod:`.predict` writes the masks of any store and, where the store has true masks, their Dice.
Labels follow :mod:`cxrgen.evaluation.severity`: 0 background, 1 right lung (image left),
2 left lung.
"""
