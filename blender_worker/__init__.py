"""Headless Blender worker: extracts scene-format documents from .blend and other 3D files."""
