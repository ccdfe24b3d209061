"""End-to-end pipelines (extract, transform, load), one module per job."""
