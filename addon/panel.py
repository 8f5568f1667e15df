"""The sidebar tab in the 3D viewport: prompt, options, progress, errors and recent results."""

import textwrap

import bpy

from .properties import preferences

WRAP_CHARS = 42


class BMT_PT_generate(bpy.types.Panel):
    bl_label = "Generate"
    bl_idname = "BMT_PT_generate"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Generate"

    def draw(self, context):
        layout = self.layout
        state = context.window_manager.bmt
        layout.prop(state, "prompt", text="")
        row = layout.row(align=True)
        for name in ("geometry", "materials", "modifiers", "animation"):
            row.prop(state, f"use_{name}", toggle=True)
        col = layout.column(align=True)
        col.prop(state, "face_budget")
        col.prop(state, "seed")
        col.prop(state, "variations")
        if state.is_running:
            layout.progress(
                factor=state.progress, type="BAR", text=f"{state.progress:.0%}  {state.status_text}"
            )
            layout.operator("bmt.cancel", icon="CANCEL")
        else:
            layout.operator("bmt.generate", icon="PLAY")
            if state.status_text:
                layout.label(text=state.status_text)
        if state.error_text:
            box = layout.box()
            for n, line in enumerate(textwrap.wrap(state.error_text, WRAP_CHARS)):
                box.label(text=line, icon="ERROR" if n == 0 else "BLANK1")
        prefs = preferences(context)
        if prefs is not None and not prefs.gateway_url.strip():
            layout.label(text="Set the gateway URL in the add-on preferences.", icon="INFO")


class BMT_PT_recent(bpy.types.Panel):
    bl_label = "Recent Results"
    bl_idname = "BMT_PT_recent"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Generate"
    bl_parent_id = "BMT_PT_generate"

    def draw(self, context):
        layout = self.layout
        results = context.window_manager.bmt.results
        if not len(results):
            layout.label(text="Nothing generated yet in this session.")
        for index, entry in enumerate(results):
            row = layout.row()
            row.label(text=f"{entry.label} ({entry.object_count} objects)")
            row.operator("bmt.insert_result", text="Insert Again", icon="ADD").index = index


CLASSES = (BMT_PT_generate, BMT_PT_recent)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
