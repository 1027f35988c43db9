"""Alembic migrations, shipped inside the package so an installed spamsift (the Docker
image) can run `spamsift db upgrade`."""
