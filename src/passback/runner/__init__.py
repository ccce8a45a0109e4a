"""Ways to run a sync: in-process here; the distributed engine calls the same function."""
