"""Bringing papers in: one module per source format (upstream list, metadata, survey table,
BibTeX), plus paper files, ids, titles and venues shared by the importers."""
