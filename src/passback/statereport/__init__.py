"""State reporting (seed 003): posted grades sent to the state's Ed-Fi ODS/API."""
