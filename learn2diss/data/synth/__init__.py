"""Demo corpus builder: a multi-speaker speech corpus with exact phone alignments, made offline."""
