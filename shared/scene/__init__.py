"""The scene format (see models.py); ``python -m shared.scene schema`` prints its JSON Schema."""

from shared.scene.models import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, Scene
from shared.scene.validate import Limits, SceneValidationError, parse_scene

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Scene",
    "Limits",
    "SceneValidationError",
    "parse_scene",
    "json_schema",
]


def json_schema() -> dict:
    schema = Scene.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://blendermodeltraining.dev/schemas/scene-{SCHEMA_VERSION}.json"
    return schema
