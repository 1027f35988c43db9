"""The ``spamsift`` command: thin commands over core, workers and web."""
