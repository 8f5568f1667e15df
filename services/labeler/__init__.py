"""Labels, quality filter, deduplication and versioned datasets (issue 6)."""
