"""sae_core: sparse autoencoders, activation sources and dictionary-similarity statistics
for the MCS report. See README.md for the report and the chapters that use each piece."""

__version__ = "0.1.0"
