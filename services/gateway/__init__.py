"""The REST gateway the Blender add-on talks to. Entry point: ``python -m services.gateway``."""
