"""Score and status conversion (X): the seeds' transfer tables as pure functions."""
