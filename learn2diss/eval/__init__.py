"""Evaluation: ABX, purity, CTC fine-tuning and decoding, probes, tables."""
