"""One Typer command per file; each parses options and calls library code."""
