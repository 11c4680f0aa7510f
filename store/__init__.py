"""The one model set (SQLAlchemy 2) and the Alembic migrations, shared by indexer, oracle and API."""
