"""cat-reward: Compute as Teacher (CaT) rewards as an HTTP service."""

__version__ = "0.1.0"
