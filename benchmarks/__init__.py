"""Speed and memory benchmarks of lafam_utils against its peers; run with ``make bench``."""
