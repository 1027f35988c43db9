"""Celery workers: the app and its queues, and thin tasks over core and ml."""
