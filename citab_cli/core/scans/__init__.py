"""A cohort's scans onto the project grid: reading and the minimal pipeline, t1-linear, DICOM
series, the per-scan cache and worker pool, and quality control."""
