"""Accord's benchmark figures: each measured against its raw limit in the same run.

Run them all with ``python -m bench`` (``make bench``); see bench/README.md.
"""
