"""CTC fine-tuning of the frame encoder on letters and 4-gram lexicon decoding (paper Tables 4 and 7)."""
