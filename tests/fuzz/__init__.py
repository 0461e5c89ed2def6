"""Hostile input: JSON guard, security headers, schemathesis, parser fuzzing, nasty corpus."""
