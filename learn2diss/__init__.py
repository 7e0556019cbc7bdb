"""Learn2Diss: disentangled self-supervised speech representations."""

__version__ = "0.1.0"
