"""Dagster-free domain logic, one sub-package per domain; `schema` at the root is the flow schema every domain shares."""
