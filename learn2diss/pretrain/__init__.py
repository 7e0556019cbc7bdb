"""Pretraining: losses (paper eq. 1-10), k-means targets, stages and the trainer."""
