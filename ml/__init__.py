"""Machine learning: encoders, chunking, classifiers, metrics. Pure: no database, no Flask,
no Celery."""
