"""``python -m sae_core.report``: run the chapters for a profile and build the book."""

from sae_core.report.build import main

main()
