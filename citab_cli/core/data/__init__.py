"""From a user's files to a stored cohort: schemas, the raw table, image paths, preprocessing,
splits, ingest, and the project directory that holds the result."""
