"""GraphQL types: one per module, each built from a database row by `from_row()` (types are not ORM rows)."""
