"""Preferences (gateway URL, API key, timeouts) and the panel's state on the window manager.

The state lives on the window manager, not the scene, so generating never changes what is saved
in the .blend file except the created objects themselves.
"""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

ADDON_ID = __package__


class BMT_Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    gateway_url: StringProperty(
        name="Gateway URL",
        description="Address of the generation gateway",
        default="http://127.0.0.1:8000",
    )
    api_key: StringProperty(
        name="API Key",
        description="Sent as X-API-Key; leave empty when the gateway needs none",
        subtype="PASSWORD",
    )
    request_timeout: FloatProperty(
        name="Request Timeout (s)",
        description="How long to wait for the gateway to answer one request",
        default=30.0,
        min=1.0,
        max=600.0,
    )
    generation_timeout: FloatProperty(
        name="Give Up After (s)",
        description="Cancel a generation that has not finished after this long",
        default=600.0,
        min=10.0,
        max=7200.0,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "gateway_url")
        layout.prop(self, "api_key")
        row = layout.row()
        row.prop(self, "request_timeout")
        row.prop(self, "generation_timeout")


class BMT_Result(bpy.types.PropertyGroup):
    """One generated variation the user can insert again; the document itself stays in memory."""

    key: StringProperty()
    label: StringProperty()
    object_count: IntProperty()
    target: StringProperty()  # set when the result dresses an existing object
    parts: StringProperty()  # which of its materials, modifiers, animation to apply, comma-separated


class BMT_State(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to make, in words")
    mode: EnumProperty(
        name="Mode",
        items=(
            ("NEW", "New Object", "Generate new objects at the 3D cursor"),
            (
                "SELECTED",
                "Apply to Selected",
                "Give the active object generated materials, modifiers or animation",
            ),
        ),
        default="NEW",
    )
    use_geometry: BoolProperty(name="Geometry", default=True)
    use_materials: BoolProperty(name="Materials", default=True)
    use_modifiers: BoolProperty(name="Modifiers", default=True)
    use_animation: BoolProperty(name="Animation", default=False)
    face_budget: IntProperty(
        # The gateway's default caps (BMT_GENERATION_MAX_FACE_BUDGET, _MAX_VARIATIONS); it explains any refusal.
        name="Face Budget",
        description="Most faces per result",
        default=400,  # the gateway's default (DEFAULT_FACE_BUDGET in shared/inference.py)
        min=10,
        max=800,
    )
    seed: IntProperty(
        name="Seed", description="Same seed and prompt give the same result; -1 = random", default=-1, min=-1
    )
    variations: IntProperty(
        name="Variations", description="How many different results", default=1, min=1, max=4
    )
    is_running: BoolProperty()
    progress: FloatProperty(subtype="FACTOR", min=0.0, max=1.0)
    status_text: StringProperty()
    stages_text: StringProperty()  # one line per stage of the running generation
    warnings_text: StringProperty()  # one line per part left out of the last result
    error_text: StringProperty()
    results: CollectionProperty(type=BMT_Result)


CLASSES = (BMT_Preferences, BMT_Result, BMT_State)


def preferences(context) -> BMT_Preferences | None:
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.bmt = PointerProperty(type=BMT_State)


def unregister():
    del bpy.types.WindowManager.bmt
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
