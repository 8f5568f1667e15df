"""The sidebar tab in the 3D viewport: prompt, options, progress, errors and recent results."""

import textwrap

import bpy

from .operators import SPECIALISTS
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
        layout.row().prop(state, "mode", expand=True)
        row = layout.row(align=True)
        for name in SPECIALISTS:
            if name == "geometry" and state.mode == "SELECTED":
                continue  # the selected object keeps its own geometry
            row.prop(state, f"use_{name}", toggle=True)
        col = layout.column(align=True)
        if state.mode == "NEW":
            col.prop(state, "face_budget")
        col.prop(state, "seed")
        if state.mode == "NEW":
            col.prop(state, "variations")
        elif context.active_object is None:
            layout.label(text="Select the object to apply to.", icon="INFO")
        if state.is_running:
            layout.progress(
                factor=state.progress, type="BAR", text=f"{state.progress:.0%}  {state.status_text}"
            )
            for line in state.stages_text.splitlines():
                layout.label(text=line, icon="DOT")
            layout.operator("bmt.cancel", icon="CANCEL")
        else:
            label = "Generate" if state.mode == "NEW" else "Apply to Selected"
            layout.operator("bmt.generate", text=label, icon="PLAY")
            if state.status_text:
                layout.label(text=state.status_text)
        if state.warnings_text:
            box = layout.box()
            for warning in state.warnings_text.splitlines():
                for n, line in enumerate(textwrap.wrap(warning, WRAP_CHARS)):
                    box.label(text=line, icon="INFO" if n == 0 else "BLANK1")
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
            if entry.target:
                row.label(text=f"{entry.label} (on {entry.target})")
                row.operator("bmt.insert_result", text="Apply Again", icon="ADD").index = index
            else:
                row.label(text=f"{entry.label} ({entry.object_count} objects)")
                row.operator("bmt.insert_result", text="Insert Again", icon="ADD").index = index


CLASSES = (BMT_PT_generate, BMT_PT_recent)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
