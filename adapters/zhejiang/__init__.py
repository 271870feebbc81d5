"""Zhejiang: shared-data SQL views (SQLAlchemy URL; SQLite sandbox, MariaDB/PostgreSQL for real)."""
