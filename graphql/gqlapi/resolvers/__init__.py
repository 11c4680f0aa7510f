"""Root-field resolvers: each builds one SQL query (plus DataLoaders for nested relations)."""
