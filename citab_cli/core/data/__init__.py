"""A stored cohort: the table validated against its schema, image paths, splits, the ingest
that writes it atomically, its manifest, and the project directory that holds it all."""
