"""The processing stage between adapters and the buffer: quality, river, rename/unit/drop, pseudonymize.

`api` holds the contracts, `stage` the ordered, matched run, `registry` the kinds by `type`. See
docs/quality-and-river.md and the README's "Processing" section.
"""
