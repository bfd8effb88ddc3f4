"""Writing papers out for reference managers and the site: BibTeX, CSL-JSON and JSON."""
