"""The cohort schema and what it is made from: the schema itself, the raw CSV read as text,
data dictionaries, and drafting a schema from a CSV."""
