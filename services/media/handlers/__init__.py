"""The internal HTTP API: ``/v1/media`` and ``/v1/assets``."""
