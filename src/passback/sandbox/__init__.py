"""The sandbox district: emulated Canvas and PowerSchool with generated data."""
