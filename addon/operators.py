"""Generate, Cancel and Insert operators, and the timer that follows a running generation.

The network work happens in client.GenerationJob's thread. ``poll_generation`` runs on Blender's
UI thread from bpy.app.timers: it copies the job's progress into the panel's state and, once the
gateway returns scenes, inserts the first variation through the Insert operator, called so that
Blender records it as one undo step. Insert is also how "insert again" works for the recent
results. In "Apply to selected" mode the active object (selection.py) goes to POST /v1/apply and the
result's materials, modifiers and animation go onto that object instead of new ones.
"""

import itertools
import textwrap
import urllib.parse

import bpy
from bpy.props import IntProperty

from .client import GatewayClient, GenerationJob
from .injector import APPLIED_PARTS, InjectionError, apply_to_object, inject_scene
from .properties import preferences
from .selection import apply_target
from .validate import validate_scene

POLL_INTERVAL_S = 0.25
MAX_RECENT = 10
SPECIALISTS = ("geometry", "materials", "modifiers", "animation")
ARMATURE_PARTS = ("animation",)  # a rig has no mesh for a material or modifiers

# Session memory: documents are too large for properties; they are kept until Blender quits.
_documents: dict[str, dict] = {}
_keys = itertools.count(1)
_job: GenerationJob | None = None
_target = ""  # in "Apply to selected" mode: the object the running generation dresses
_notes: list[str] = []  # what the add-on itself has to say about the running request
LOCAL_HOSTS = ("localhost", "::1")


def build_request(state, target=None) -> tuple[str, dict]:
    """The path and body to POST: a generation, or with ``target`` (an object) an apply to
    selection. ValueError, worded for the user, for a target the gateway could not take."""
    request = {
        "prompt": state.prompt.strip(),
        "specialists": [name for name in SPECIALISTS if getattr(state, f"use_{name}")],
        "seed": None if state.seed < 0 else state.seed,
    }
    if target is None:
        return "/v1/generations", {
            **request,
            "face_budget": state.face_budget,
            "variations": state.variations,
        }
    parts = ARMATURE_PARTS if target.type == "ARMATURE" else APPLIED_PARTS
    request["specialists"] = [name for name in request["specialists"] if name in parts]
    return "/v1/apply", {**request, "object": apply_target(target)}


def is_local(url: str) -> bool:
    """Whether the gateway runs on this computer, which Blender's Online Access does not govern."""
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


class BMT_OT_generate(bpy.types.Operator):
    """Send the prompt to the generation gateway; the result appears at the 3D cursor"""

    bl_idname = "bmt.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        state = context.window_manager.bmt
        return not state.is_running and bool(state.prompt.strip())

    def execute(self, context):
        global _job, _target
        state = context.window_manager.bmt
        target = None
        if state.mode == "SELECTED":
            target = context.active_object
            if target is None or not target.select_get():
                return self._refuse(state, "Select the object to apply materials, modifiers or animation to.")
        try:
            path, request = build_request(state, target)
        except ValueError as exc:
            return self._refuse(state, str(exc))
        if not request["specialists"]:
            if target is not None and target.type == "ARMATURE":
                return self._refuse(state, f"{target.name} is an armature: only Animation applies to it.")
            wanted = (
                "materials, modifiers, animation" if target else "geometry, materials, modifiers, animation"
            )
            return self._refuse(state, f"Choose at least one of {wanted}.")
        if target is None and not state.use_geometry:
            return self._refuse(
                state,
                "Generate makes new objects, so it needs Geometry. "
                "To dress an object you have, choose Apply to Selected.",
            )
        prefs = preferences(context)
        if prefs is None:
            return self._refuse(state, "The add-on's preferences are missing; enable it again.")
        url = prefs.gateway_url.strip()
        if not url:
            return self._refuse(state, "Set the gateway URL in the add-on preferences first.")
        if not bpy.app.online_access and not is_local(url):
            return self._refuse(
                state,
                f"Online access is off in Blender, and the gateway at {url} is not on this computer. "
                "Allow it in Preferences > System > Network, or use a gateway on this computer.",
            )
        client = GatewayClient(url, prefs.api_key, prefs.request_timeout)
        _job = GenerationJob(
            client, request, validate_scene, give_up_after_s=prefs.generation_timeout, path=path
        ).start()
        _target = target.name if target is not None else ""
        state.is_running = True
        state.progress = 0.0
        state.status_text = "Sending the request..."
        state.error_text = state.stages_text = ""
        _notes.clear()
        if target is not None and target.type == "ARMATURE" and (state.use_materials or state.use_modifiers):
            _notes.append(f"{target.name} is an armature: only its animation was asked for.")
        state.warnings_text = "\n".join(_notes)
        if not bpy.app.timers.is_registered(poll_generation):
            bpy.app.timers.register(poll_generation, first_interval=POLL_INTERVAL_S)
        return {"FINISHED"}

    def _refuse(self, state, message: str):
        state.error_text = message
        self.report({"ERROR"}, message)
        return {"CANCELLED"}


class BMT_OT_cancel(bpy.types.Operator):
    """Stop the running generation"""

    bl_idname = "bmt.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return context.window_manager.bmt.is_running

    def execute(self, context):
        stop_job()
        state = context.window_manager.bmt
        state.is_running = False
        state.status_text = "Cancelled."
        _redraw(context.window_manager)
        return {"FINISHED"}


class BMT_OT_insert_result(bpy.types.Operator):
    """Create this result in the scene at the 3D cursor"""

    bl_idname = "bmt.insert_result"
    bl_label = "Insert"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Result", default=0, min=0)

    @classmethod
    def poll(cls, context):
        return context.mode == "OBJECT"

    def execute(self, context):
        state = context.window_manager.bmt
        if self.index >= len(state.results):
            self.report({"ERROR"}, "That result is no longer available.")
            return {"CANCELLED"}
        entry = state.results[self.index]
        document = _documents.get(entry.key)
        if document is None:
            self.report({"ERROR"}, "That result is no longer available.")
            return {"CANCELLED"}
        try:
            if entry.target:
                target = context.scene.objects.get(entry.target)
                if target is None:
                    return self._fail(
                        state, f"{entry.target} is no longer in the scene; nothing was changed."
                    )
                result = apply_to_object(document, target, parts=entry.parts.split(","))
            else:
                result = inject_scene(
                    document,
                    collection=context.collection,
                    offset=context.scene.cursor.location.copy(),
                    add_uv_maps=True,  # generated meshes arrive without one; a user textures at once
                )
        except InjectionError as exc:
            return self._fail(state, f"The result could not be created, nothing was added: {exc}")
        self._select(context.view_layer, result.objects)
        state.error_text = ""
        if entry.target:
            summary = f"Applied {entry.label} to {entry.target}"
        else:
            summary = f"Inserted {entry.label}: {len(result.objects)} objects"
        if result.warnings:
            summary += f", {len(result.warnings)} parts skipped"
            for warning in result.warnings:
                self.report({"WARNING"}, warning)
        # The document's warnings and the parts this insert skipped, under the summary line.
        state.warnings_text = "\n".join([*_document_warnings(document), *result.warnings])
        state.status_text = summary
        self.report({"INFO"}, summary)
        return {"FINISHED"}

    def _fail(self, state, message: str):
        state.error_text = message
        self.report({"ERROR"}, message)
        return {"CANCELLED"}

    @staticmethod
    def _select(view_layer, objects) -> None:
        """Select what was inserted, as Blender does after adding an object."""
        view_layer.update()  # newly linked objects join the view layer on update
        for obj in view_layer.objects.selected:
            obj.select_set(False)
        visible = [obj for obj in objects if view_layer.objects.get(obj.name) is not None]
        for obj in visible:
            obj.select_set(True)
        if visible:
            view_layer.objects.active = visible[0]


def poll_generation():
    """Timer body: mirror the job into the panel; insert the first result when it arrives."""
    wm = bpy.context.window_manager
    state = wm.bmt
    job = _job
    if job is None or not state.is_running:
        return None
    snap = job.snapshot()
    state.progress = snap.progress
    state.status_text = snap.message
    state.stages_text = "\n".join(snap.stages)
    _redraw(wm)
    if snap.status not in ("succeeded", "failed", "cancelled"):
        return POLL_INTERVAL_S
    state.is_running = False
    if snap.status == "failed":
        # The last progress line ("Sending the request...") would read as if it were still going.
        state.status_text, state.progress = "", 0.0
        state.error_text = snap.error or "The generation failed."
    elif snap.status == "succeeded":
        remember_results(state, snap.scenes, target=_target)
        _insert_from_timer(wm, 0)  # newest first: index 0 is the first variation
        # Insert wrote the first variation's warnings and the parts it skipped; the gateway's own,
        # the variations left out and this request's notes join them, each once.
        lines = [*_notes, *snap.warnings, *state.warnings_text.splitlines()]
        state.warnings_text = "\n".join(dict.fromkeys(lines))
    return None


def _document_warnings(document: dict) -> list[str]:
    return [w for w in document.get("warnings", []) if isinstance(w, str)]


def remember_results(state, scenes: list, target: str = "") -> None:
    """Add the variations to the top of the recent list, in order; drop the oldest past the cap."""
    prompt = state.prompt.strip()
    entries = []
    for n, document in enumerate(scenes):
        key = str(next(_keys))
        _documents[key] = document
        count = len(document["objects"])
        label = textwrap.shorten(prompt, 32, placeholder="...")
        entries.append((key, f"{label} #{n + 1}" if len(scenes) > 1 else label, count))
    parts = ",".join(name for name in APPLIED_PARTS if getattr(state, f"use_{name}"))
    for key, label, count in reversed(entries):
        item = state.results.add()
        item.key, item.label, item.object_count = key, label, count
        item.target, item.parts = target, parts if target else ""
        state.results.move(len(state.results) - 1, 0)
    while len(state.results) > MAX_RECENT:
        _documents.pop(state.results[-1].key, None)
        state.results.remove(len(state.results) - 1)


def _insert_from_timer(wm, index: int) -> None:
    """Timers run without a window in the context; give the operator one so it has a scene.

    An operator called from Python pushes no undo step unless asked: the second positional
    argument (undo=True) makes Blender record the insert as one step, as a click on Insert does.
    """
    window = wm.windows[0] if len(wm.windows) else None
    try:
        if window is None:
            bpy.ops.bmt.insert_result("EXEC_DEFAULT", True, index=index)
        else:
            with bpy.context.temp_override(window=window):
                bpy.ops.bmt.insert_result("EXEC_DEFAULT", True, index=index)
    except RuntimeError:
        # Refused: its own failures are already in the panel; a poll refusal (not in Object
        # Mode) says nothing by itself.
        state = wm.bmt
        if not state.error_text:
            state.status_text = "Done: back in Object Mode, insert it from Recent Results."


def stop_job() -> None:
    global _job
    if _job is not None:
        _job.cancel()
        _job = None
    if bpy.app.timers.is_registered(poll_generation):
        bpy.app.timers.unregister(poll_generation)


def _redraw(wm) -> None:
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


CLASSES = (BMT_OT_generate, BMT_OT_cancel, BMT_OT_insert_result)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    stop_job()
    _documents.clear()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
