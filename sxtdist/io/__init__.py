"""Input and output: the NGFF helpers, and ingest/export of other formats."""
