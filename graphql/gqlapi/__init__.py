"""The carbonledger GraphQL API (strawberry over psycopg 3): imported as `gqlapi` from the graphql/ folder."""
