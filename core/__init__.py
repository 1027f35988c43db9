"""Shared foundation: settings, database, ORM models, MIME parsing and mail import."""
