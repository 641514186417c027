"""Headshot Studio: selfies in, studio headshots out."""

__version__ = "0.1.0"
