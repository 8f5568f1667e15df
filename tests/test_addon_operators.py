"""The add-on as Blender runs it: register/unregister, and Generate/Cancel/Insert/Apply against the
real gateway process (embedded backends, a small geometry model). A hand-written gateway stands in
only for what the real one cannot be made to do on demand; each such test says why."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bpy  # in CI a missing bpy fails the run: never importorskip
import numpy as np
import pytest
from pydantic import TypeAdapter

# isort: split
import addon_utils  # ships with bpy, importable once bpy is

from services.gateway.generations import request_models
from shared.settings import get_settings
from tests.addon_support import data_counts, reset_blender, small_scene
from tools.servers import gateway_process

ADDON = "addon"  # the package name when enabled from the repository (installed: bl_ext.<repo>.<id>)
API_KEY = "k"
MAX_FACE_BUDGET = 100  # the real gateway's cap here, so a larger budget is a real refusal


@pytest.fixture(scope="module")
def gateway_url(geometry_checkpoint, tmp_path_factory) -> str:
    """One real gateway process for the module: python -m services.gateway, embedded inference."""
    env = {
        "BMT_DATA_DIR": str(tmp_path_factory.mktemp("gateway") / "var"),
        "BMT_GEOMETRY_CHECKPOINT": str(geometry_checkpoint),
        "BMT_API_KEY": API_KEY,
        "BMT_GENERATION_MAX_FACE_BUDGET": str(MAX_FACE_BUDGET),
        # One torch thread: on 2 shared cores two spinning threads made each small product ~100x slower.
        "OMP_NUM_THREADS": "1",
        # Material, modifier and animation: the committed checkpoints (the settings' defaults); the
        # first call loads the text encoder, minutes on a busy 2-core machine.
        "BMT_INFERENCE_TIMEOUT_S": "600",
    }
    with gateway_process(env) as url:
        yield url


class Gateway:
    """The gateway API contract, in-process, recording what it was sent; for the cases the real
    gateway cannot produce on demand. ``running``/``done``: extra fields of the status replies."""

    def __init__(
        self,
        scenes,
        polls_before_done: int = 2,
        api_key: str = "",
        fail_with: str | None = None,
        running: dict | None = None,
        done: dict | None = None,
    ):
        self.scenes = scenes
        self.running, self.done = running or {}, done or {}
        self.polls_before_done = polls_before_done
        self.api_key = api_key
        self.fail_with = fail_with
        self.requests: list[tuple[str, str, object, object]] = []  # method, path, headers, body
        self.release_post = threading.Event()
        self.release_post.set()
        self.post_answered = threading.Event()
        self.allow_finish = threading.Event()  # cleared: the generation stays "running"
        self.allow_finish.set()
        self.deleted = threading.Event()
        self.polls = 0
        self.cancelled: set[str] = set()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if gateway.api_key and self.headers.get("X-API-Key") != gateway.api_key:
                    self.reply(401, {"detail": "invalid API key"})
                    return False
                return True

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                gateway.requests.append(("POST", self.path, self.headers, body))
                if not self.authorised():
                    return
                if not isinstance(body.get("prompt"), str) or not body["prompt"]:
                    self.reply(422, {"detail": "prompt: must be a non-empty string"})
                    return
                gateway.release_post.wait(10)
                self.reply(202, {"id": "gen-1", "status": "queued"})
                gateway.post_answered.set()

            def do_GET(self):
                gateway.requests.append(("GET", self.path, self.headers, None))
                if self.path == "/healthz":
                    self.reply(200, {"status": "ok"})
                    return
                if not self.authorised():
                    return
                generation_id = self.path.rsplit("/", 1)[-1]
                gateway.polls += 1
                state = {"id": generation_id, "message": "", "error": None, "scenes": []}
                if generation_id in gateway.cancelled:
                    state.update(status="cancelled", progress=0.0)
                elif gateway.polls <= gateway.polls_before_done or not gateway.allow_finish.is_set():
                    progress = min(gateway.polls / (gateway.polls_before_done + 1), 0.9)
                    state.update(status="running", progress=progress, message="Shaping the mesh")
                    state.update(gateway.running)
                elif gateway.fail_with:
                    state.update(status="failed", progress=0.5, error=gateway.fail_with)
                else:
                    state.update(status="succeeded", progress=1.0, scenes=gateway.scenes)
                    state.update(gateway.done)
                self.reply(200, state)

            def do_DELETE(self):
                gateway.requests.append(("DELETE", self.path, self.headers, None))
                if not self.authorised():
                    return
                generation_id = self.path.rsplit("/", 1)[-1]
                gateway.cancelled.add(generation_id)
                gateway.deleted.set()
                self.reply(202, {"id": generation_id, "status": "cancelled"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release_post.set()
        self.server.shutdown()
        self.server.server_close()

    def methods(self) -> list[str]:
        return [method for method, *_ in self.requests]


@pytest.fixture
def enabled():
    reset_blender()
    assert addon_utils.enable(ADDON, default_set=True) is not None
    from addon import operators

    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.request_timeout = 5.0
    state = bpy.context.window_manager.bmt
    state.prompt = "a small wooden crate"
    yield operators, prefs, state
    addon_utils.disable(ADDON, default_set=True)
    reset_blender()


@pytest.fixture
def real(enabled, gateway_url):
    """The add-on pointed at the real gateway, asking for geometry only, within its face cap."""
    operators, prefs, state = enabled
    prefs.gateway_url, prefs.api_key = gateway_url, API_KEY
    state.use_materials = state.use_modifiers = state.use_animation = False
    state.face_budget, state.seed = 40, 11
    return enabled


def drive(operators, timeout_s: float = 60.0) -> None:
    """Call the timer body as bpy.app.timers would, until it stops rescheduling itself.

    bpy.app.timers only fire inside Blender's event loop, which the bpy module (background) never
    runs: measured here, a registered timer stayed unfired after a second.
    """
    deadline = time.monotonic() + timeout_s
    while operators.poll_generation() is not None:
        assert time.monotonic() < deadline, "the generation never finished"
        time.sleep(0.05)


def generated_objects() -> list[str]:
    return sorted(o.name for o in bpy.data.objects)


def test_registers_and_unregisters_cleanly_twice():
    reset_blender()
    for _ in range(2):
        assert addon_utils.enable(ADDON, default_set=True) is not None
        assert hasattr(bpy.types.WindowManager, "bmt")
        assert hasattr(bpy.types, "BMT_PT_generate") and hasattr(bpy.types, "BMT_PT_recent")
        assert bpy.ops.bmt.generate.poll() is False  # no prompt yet
        assert ADDON in bpy.context.preferences.addons
        addon_utils.disable(ADDON, default_set=True)
        assert not hasattr(bpy.types.WindowManager, "bmt")
        assert not hasattr(bpy.types, "BMT_PT_generate")
        assert ADDON not in bpy.context.preferences.addons
    reset_blender()


def test_generate_inserts_the_real_gateways_meshes_at_the_cursor(real):
    operators, prefs, state = real
    state.prompt, state.variations = "a round table", 2
    bpy.context.scene.cursor.location = (5.0, 0.0, 0.0)
    assert bpy.ops.bmt.generate() == {"FINISHED"}
    assert state.is_running and bpy.app.timers.is_registered(operators.poll_generation)
    drive(operators)
    assert not state.is_running and state.error_text == "", state.error_text
    table = bpy.data.objects["A_Round_Table"]
    assert table.type == "MESH" and 1 <= len(table.data.polygons) <= 40
    assert [layer.name for layer in table.data.uv_layers] == ["UVMap"]  # unwrapped on insert
    assert tuple(table.location) == (5.0, 0.0, 0.0)  # variation 1 stands at the gateway's x = 0
    assert table.select_get() and bpy.context.view_layer.objects.active == table
    assert [r.label for r in state.results] == ["a round table #1", "a round table #2"]
    assert state.status_text == "Inserted a round table #1: 1 objects"
    assert state.warnings_text == "" and state.progress == 1.0
    # "Insert again" for the second variation: a new, de-duplicated object beside the first.
    assert bpy.ops.bmt.insert_result(index=1) == {"FINISHED"}
    assert bpy.data.objects["A_Round_Table.001"].location.x == pytest.approx(5.0 + 2.5)


def test_the_automatic_insert_is_one_undo_step(real):
    operators, prefs, state = real
    window = bpy.context.window_manager.windows[0]
    # The bpy module starts without an undo stack; an explicit push creates it, as Blender's UI has.
    bpy.ops.ed.undo_push(message="before Generate")
    before = generated_objects()
    assert bpy.ops.bmt.generate() == {"FINISHED"}
    drive(operators)
    assert generated_objects() == [*before, "A_Small_Wooden_Crate"]
    with bpy.context.temp_override(window=window, screen=window.screen):
        assert bpy.ops.ed.undo() == {"FINISHED"}
    assert generated_objects() == before  # one undo removes exactly what Generate inserted


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"api_key": "wrong"}, "The gateway refused the API key. Check it in the add-on preferences. ("),
        (
            {"face_budget": MAX_FACE_BUDGET + 1},
            f"The gateway refused the request (face_budget: Input should be less than or equal to {MAX_FACE_BUDGET})",
        ),
        (
            {"gateway_url": "http://127.0.0.1:9"},
            "Could not reach the generation gateway at http://127.0.0.1:9",
        ),
    ],
)
def test_refusals_are_reported_in_plain_words_and_add_nothing(real, change, expected):
    operators, prefs, state = real
    before = data_counts()
    for key, value in change.items():
        setattr(prefs if hasattr(prefs, key) else state, key, value)
    assert bpy.ops.bmt.generate() == {"FINISHED"}
    drive(operators)
    assert state.error_text.startswith(expected), state.error_text
    assert not state.is_running and state.status_text == "" and data_counts() == before


def test_generate_without_geometry_says_what_to_do_instead(real):
    """Generate makes new objects (the gateway always writes their geometry first): without
    Geometry ticked the add-on says so and points to Apply to Selected, sending nothing."""
    operators, prefs, state = real
    state.use_geometry, state.use_materials = False, True
    before = data_counts()
    with pytest.raises(RuntimeError, match="needs Geometry.*Apply to Selected"):
        bpy.ops.bmt.generate()
    assert not state.is_running and state.status_text == "" and data_counts() == before


def test_a_refused_generation_clears_the_progress_line_and_says_why(enabled, tmp_path):
    """A real refusal: the gateway process has no geometry checkpoint to load, and says so."""
    operators, prefs, state = enabled
    env = {"BMT_DATA_DIR": str(tmp_path / "var"), "BMT_GEOMETRY_CHECKPOINT": str(tmp_path / "none.pt")}
    env["OMP_NUM_THREADS"] = "1"
    with gateway_process(env) as url:
        prefs.gateway_url = url
        state.use_materials = state.use_modifiers = False
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        assert state.status_text == "Sending the request..."
        drive(operators)
    assert state.error_text.startswith(
        "The gateway refused the request (geometry: not available: no geometry checkpoint"
    ), state.error_text
    assert state.status_text == "" and state.progress == 0.0 and not state.is_running


def test_online_access_off_refuses_a_remote_gateway_but_not_a_local_one(real):
    operators, prefs, state = real
    system = bpy.context.preferences.system
    system.use_online_access = False
    try:
        assert not bpy.app.online_access
        local_url, prefs.gateway_url = prefs.gateway_url, "https://gateway.example.com"
        with pytest.raises(RuntimeError, match="Online access is off in Blender, and the gateway at https"):
            bpy.ops.bmt.generate()
        assert not state.is_running and "Preferences > System > Network" in state.error_text
        prefs.gateway_url = local_url  # the real gateway, on 127.0.0.1: allowed while offline
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        drive(operators)
        assert state.error_text == "" and "A_Small_Wooden_Crate" in bpy.data.objects
    finally:
        system.use_online_access = True
    for url in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        assert operators.is_local(url)
    assert not operators.is_local("http://192.168.1.20:8000")


# ---- what the real gateway cannot be made to do on demand ---------------------------------------


def test_generate_returns_before_the_gateway_answers(enabled):
    """Fake: it holds its answer to the POST, which the real gateway never does for long."""
    operators, prefs, state = enabled
    state.variations, state.use_animation, state.seed = 2, True, 7
    with Gateway([small_scene("Crate"), small_scene("Crate")], api_key="secret") as gateway:
        prefs.gateway_url, prefs.api_key = gateway.url, "secret"
        gateway.release_post.clear()
        gateway.allow_finish.clear()
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        assert not gateway.post_answered.is_set()  # the operator returned before the gateway answered
        assert state.is_running
        gateway.release_post.set()
        assert gateway.post_answered.wait(5)
        time.sleep(1.0)
        assert gateway.polls >= 1 and state.status_text == "Sending the request..."
        assert operators.poll_generation() == operators.POLL_INTERVAL_S
        assert state.status_text == "Shaping the mesh" and 0.0 < state.progress < 1.0
        gateway.allow_finish.set()
        drive(operators)
    method, path, headers, body = gateway.requests[0]
    assert (method, path, headers["X-API-Key"]) == ("POST", "/v1/generations", "secret")
    assert body == {
        "prompt": "a small wooden crate",
        "specialists": ["geometry", "materials", "modifiers", "animation"],
        "face_budget": 400,
        "seed": 7,
        "variations": 2,
    }
    crate = bpy.data.objects["Crate"]
    assert crate.modifiers["Bevel"].width == pytest.approx(0.08)
    assert crate.data.materials[0].name == "CratePaint"


def test_progress_per_stage_and_warnings_are_shown(enabled):
    """Fake: stages and a model's own scene warnings cannot be triggered on the real gateway."""
    operators, prefs, state = enabled
    scene = small_scene("Crate")
    scene["warnings"] = ["the modifier specialist found no stack for a crate"]
    scene["objects"][0]["modifiers"].append({"name": "Odd", "type": "NOT_A_MODIFIER"})
    stages = [
        {"name": "geometry", "status": "succeeded", "progress": 1.0},
        {"name": "materials", "status": "running", "progress": 0.5, "message": "object 1 of 2"},
        {"name": "modifiers", "status": "queued"},
    ]
    running = {"stages": stages}
    done = {"warnings": ["animation is not available on this gateway"], "stages": {"geometry": "succeeded"}}
    with Gateway([scene], polls_before_done=1, running=running, done=done) as gateway:
        prefs.gateway_url = gateway.url
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        while gateway.polls == 0:
            time.sleep(0.02)
        time.sleep(0.2)
        assert operators.poll_generation() == operators.POLL_INTERVAL_S
        assert state.stages_text.splitlines() == [
            "geometry: succeeded",
            "materials: running 50%, object 1 of 2",
            "modifiers: queued",
        ]
        running_panel = draw(bpy.types.BMT_PT_generate)
        assert ("label", "materials: running 50%, object 1 of 2") in running_panel
        drive(operators)
    assert state.status_text == "Inserted a small wooden crate: 1 objects, 1 parts skipped"
    assert state.warnings_text.splitlines() == [
        "animation is not available on this gateway",
        "the modifier specialist found no stack for a crate",
        "objects[0].modifiers[1].type: unknown modifier type 'NOT_A_MODIFIER'; skipped",
    ]
    assert state.error_text == ""
    idle = draw(bpy.types.BMT_PT_generate)
    assert ("label", "animation is not available on this gateway") in idle
    assert ("label", "Inserted a small wooden crate: 1 objects, 1 parts skipped") in idle


def test_a_result_that_arrives_in_edit_mode_waits_in_recent_results(real):
    operators, prefs, state = real
    mesh = bpy.data.meshes.new("Editing")
    mesh.from_pydata([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [], [[0, 1, 2]])
    editing = bpy.data.objects.new("Editing", mesh)
    bpy.context.scene.collection.objects.link(editing)
    bpy.context.view_layer.objects.active = editing
    assert bpy.ops.bmt.generate() == {"FINISHED"}
    bpy.ops.object.mode_set(mode="EDIT")
    drive(operators)
    assert bpy.context.mode == "EDIT_MESH" and "A_Small_Wooden_Crate" not in bpy.data.objects
    assert state.status_text == "Done: back in Object Mode, insert it from Recent Results."
    assert [r.label for r in state.results] == ["a small wooden crate"]
    bpy.ops.object.mode_set(mode="OBJECT")
    assert bpy.ops.bmt.insert_result(index=0) == {"FINISHED"}
    assert "A_Small_Wooden_Crate" in bpy.data.objects


def test_cancel_sends_delete_and_stops_polling(enabled):
    """Fake: the real gateway finishes the test model's mesh in under a second, too soon to cancel."""
    operators, prefs, state = enabled
    before = data_counts()
    with Gateway([small_scene()], polls_before_done=10**6) as gateway:
        prefs.gateway_url = gateway.url
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        deadline = time.monotonic() + 5
        while gateway.polls == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert operators.poll_generation() == operators.POLL_INTERVAL_S
        assert bpy.ops.bmt.cancel() == {"FINISHED"}
        assert not state.is_running and state.status_text == "Cancelled."
        assert not bpy.app.timers.is_registered(operators.poll_generation)
        assert operators.poll_generation() is None
        assert gateway.deleted.wait(5)
        polls_at_cancel = gateway.polls
        time.sleep(1.0)  # several poll intervals: the job thread must have stopped
        assert gateway.polls == polls_at_cancel
    assert gateway.requests[-1][:2] == ("DELETE", "/v1/generations/gen-1")
    assert data_counts() == before and len(state.results) == 0


def test_an_invalid_result_adds_nothing(enabled):
    """Fake: the real gateway checks every scene against the format before sending it."""
    operators, prefs, state = enabled
    before = data_counts()
    scene = small_scene()
    scene["objects"][0]["mesh"]["faces"][0] = [0, 1, 99]
    with Gateway([scene], polls_before_done=0) as gateway:
        prefs.gateway_url = gateway.url
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        drive(operators)
    assert state.error_text.startswith(
        "The result is not a valid scene, nothing was added: objects[0].mesh.faces[0]: vertex"
    )
    assert state.status_text == "" and data_counts() == before


def test_invalid_variations_are_left_out_and_said_so(enabled):
    """Fake: as above, the real gateway never sends an invalid variation."""
    operators, prefs, state = enabled
    bad = small_scene("Bad")
    bad["objects"][0]["transform"]["location"] = [0.0, float("nan"), 0.0]  # Python's json sends NaN
    with Gateway([bad, small_scene("Good")], polls_before_done=0) as gateway:
        prefs.gateway_url = gateway.url
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        drive(operators)
    assert [r.object_count for r in state.results] == [1]
    assert "Good" in bpy.data.objects and "Bad" not in bpy.data.objects
    assert state.warnings_text == (
        "1 of 2 variations were invalid and left out: "
        "objects[0].transform.location[1]: Input should be a finite number"
    )
    assert state.error_text == ""


def dressed_scene(name: str) -> dict:
    """What an apply-to-selection answer holds: the target with a material, a modifier, an action."""
    return {
        "schema_version": "1.0",
        "objects": [
            {
                "name": name,
                "material_slots": ["Varnish"],
                "modifiers": [{"name": "Mirror", "type": "MIRROR", "params": {"use_clip": True}}],
                "animation": {"action": "Bob"},
            }
        ],
        "materials": [{"name": "Varnish", "pbr": {"base_color": [0.4, 0.2, 0.1, 1.0], "roughness": 0.3}}],
        "actions": [
            {
                "name": "Bob",
                "fcurves": [
                    {"data_path": "location", "index": 2, "keyframes": [{"co": [1, 0]}, {"co": [24, 0.5]}]}
                ],
            }
        ],
    }


def select_new(name: str, data) -> bpy.types.Object:
    """A new object linked to the scene, selected and active, as the user would have it."""
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    return obj


def test_apply_to_selected_dresses_the_users_object_as_one_undo_step(enabled):
    """Fake: a known answer (this Mirror, this action), so exactly what is applied can be checked;
    test_apply_to_selected_with_the_real_models runs the real gateway and models."""
    operators, prefs, state = enabled
    mesh = bpy.data.meshes.new("StoolMesh")
    mesh.from_pydata([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [], [[0, 1, 2, 3]])
    select_new("Stool", mesh).location = (1.0, 2.0, 0.0)
    state.mode, state.prompt = "SELECTED", "varnished wood, bobbing"
    state.use_animation = True
    bpy.ops.ed.undo_push(message="before Apply")
    before = data_counts()
    with Gateway([dressed_scene("Stool")], polls_before_done=0) as gateway:
        prefs.gateway_url = gateway.url
        assert bpy.ops.bmt.generate() == {"FINISHED"}
        drive(operators)
    method, path, _, body = gateway.requests[0]
    assert (method, path) == ("POST", "/v1/apply")
    assert [r[1] for r in gateway.requests[1:]] == ["/v1/generations/gen-1"]  # polled as a generation
    request = TypeAdapter(request_models(get_settings())[1]).validate_python(body)  # the gateway's own model
    assert request.specialists == ["material", "modifier", "animation"]
    target = request.object
    assert target.name == "Stool" and target.type == "MESH" and target.transform.location == (1.0, 2.0, 0.0)
    assert len(target.mesh.vertices) == 4 and target.mesh.faces == [[0, 1, 2, 3]]
    assert state.error_text == "" and state.status_text == "Applied varnished wood, bobbing to Stool"
    stool = bpy.data.objects["Stool"]
    assert [m.name for m in stool.data.materials] == ["Varnish"]
    assert [(m.type, m.use_clip) for m in stool.modifiers] == [("MIRROR", True)]
    assert stool.animation_data.action.name == "Bob"
    after = data_counts()
    assert after["objects"] == before["objects"] and after["materials"] == before["materials"] + 1
    assert state.results[0].target == "Stool"
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window, screen=window.screen):
        assert bpy.ops.ed.undo() == {"FINISHED"}
    stool = bpy.data.objects["Stool"]
    assert len(stool.data.materials) == 0 and len(stool.modifiers) == 0 and stool.animation_data is None


def grid_mesh(vertices: int) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new("Grid")
    count = vertices // 2
    mesh.from_pydata(
        [(x, y, 0) for x in range(count) for y in (0, 1)],
        [],
        [(2 * i, 2 * i + 2, 2 * i + 3, 2 * i + 1) for i in range(count - 1)],
    )
    return mesh


def rig(name: str, bones: list[tuple[str, str | None]]) -> bpy.types.Armature:
    """An armature whose bones stand one above the other, each a child of the one named."""
    data = bpy.data.armatures.new(name)
    holder = select_new(f"{name}Edit", data)
    bpy.ops.object.mode_set(mode="EDIT")
    for height, (bone_name, parent) in enumerate(bones):
        bone = data.edit_bones.new(bone_name)
        bone.head, bone.tail = (0, 0, height), (0, 0, height + 1)
        bone.parent = data.edit_bones[parent] if parent else None
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.data.objects.remove(holder)
    return data


@pytest.mark.parametrize(
    ("make", "animation", "expected"),
    [
        (
            lambda: grid_mesh(1002),
            True,
            "Big has 1002 vertices: Apply to Selected sends the mesh to the gateway, which takes up to 1000.",
        ),
        (
            lambda: bpy.data.meshes.new("Empty"),
            True,
            "Big has no faces: Apply to Selected needs a mesh with faces.",
        ),
        (
            lambda: bpy.data.cameras.new("Lens"),
            True,
            "Big is a camera object: Apply to Selected works on a mesh or an armature.",
        ),
        (lambda: bpy.data.armatures.new("Bare"), True, "Big has no bones to animate."),
        # Materials and modifiers are ticked (the default), animation is not.
        (lambda: rig("Rig", [("Root", None)]), False, "Big is an armature: only Animation applies to it."),
    ],
)
def test_apply_to_selected_refuses_what_the_gateway_cannot_take(enabled, make, animation, expected):
    """Refused in the add-on, with nothing sent: the gateway needs the mesh (or the bones)."""
    operators, prefs, state = enabled
    select_new("Big", make())
    state.mode, state.use_animation = "SELECTED", animation
    with pytest.raises(RuntimeError, match="^Error: " + re.escape(expected)):
        bpy.ops.bmt.generate()
    assert state.error_text.startswith(expected) and not state.is_running


def action_fcurves(obj) -> list:
    """The F-curves of the object's active action (Blender's layered actions keep them in channel bags)."""
    action = obj.animation_data.action
    return [
        fc
        for layer in action.layers
        for strip in layer.strips
        for bag in strip.channelbags
        for fc in bag.fcurves
    ]


def test_apply_to_selected_with_the_real_models_dresses_a_mesh_as_one_undo_step(real):
    """The real gateway process and the committed material, modifier and animation checkpoints."""
    operators, prefs, state = real
    # A sphere: the modifier model finds it symmetric (a Mirror), which on the user's whole mesh
    # would double it, so the Mirror is left out and said so; the user asked for modifiers, so the
    # most probable one that works on the mesh as it is comes instead (live: the mesh stays).
    bpy.ops.mesh.primitive_uv_sphere_add(segments=12, ring_count=6, location=(1.0, 0.0, 0.0))
    crate = bpy.context.active_object
    crate.name = "Crate"
    state.mode, state.prompt = "SELECTED", "rusty metal crate slow spin"
    state.use_materials = state.use_modifiers = state.use_animation = True
    bpy.ops.ed.undo_push(message="before Apply")
    assert bpy.ops.bmt.generate() == {"FINISHED"}
    drive(operators, timeout_s=600)
    assert state.error_text == "" and state.status_text == "Applied rusty metal crate slow spin to Crate"
    document = operators._documents[state.results[0].key]
    (sent,) = document["objects"]
    crate = bpy.data.objects["Crate"]
    material = crate.material_slots[0].material
    assert material is not None and material.node_tree.nodes.get("Material Output") is not None
    (modifier,) = sent["modifiers"]
    assert modifier["type"] in ("BEVEL", "SUBSURF") and [m.type for m in crate.modifiers] == [
        modifier["type"]
    ]
    assert "Mirror left out: Crate is already symmetric" in state.warnings_text, state.warnings_text
    fcurves = action_fcurves(crate)
    assert fcurves and all(len(fc.keyframe_points) >= 2 for fc in fcurves)
    assert len(crate.data.vertices) == 62, "the user's own mesh is kept"
    window = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=window, screen=window.screen):
        assert bpy.ops.ed.undo() == {"FINISHED"}
    crate = bpy.data.objects["Crate"]
    assert len(crate.data.materials) == 0 and len(crate.modifiers) == 0 and crate.animation_data is None


def test_apply_to_selected_with_the_real_model_animates_an_armatures_pose_bones(real):
    operators, prefs, state = real
    bones = [("Hips", None), ("Spine", "Hips"), ("Head", "Spine"), ("Tail", "Hips")]
    hero = select_new("Hero", rig("HeroRig", bones))
    state.mode, state.prompt = "SELECTED", "walk cycle"
    state.use_materials = state.use_animation = True  # materials: not asked for, and said so
    assert bpy.ops.bmt.generate() == {"FINISHED"}
    drive(operators, timeout_s=600)
    assert state.error_text == "", state.error_text
    assert "Hero is an armature: only its animation was asked for." in state.warnings_text
    fcurves = action_fcurves(hero)
    targets = {fc.data_path.split('"')[1] for fc in fcurves}
    assert fcurves and all(fc.data_path.startswith('pose.bones["') for fc in fcurves)
    assert targets <= {name for name, _ in bones} and targets, targets
    assert all(len(fc.keyframe_points) >= 2 for fc in fcurves)
    bpy.context.scene.frame_set(int(hero.animation_data.action.frame_range[1]))  # evaluates the pose


def test_a_selected_rig_is_sent_with_its_bones_rest_frames_and_ik_targets(enabled):
    """The animation specialist turns rotations into each bone's axes by its rest frame, and moves
    the bones IK aims at: the add-on sends roll and constraint targets, and the rest frames the
    specialist rebuilds from them are Blender's own."""
    from addon.selection import object_document
    from shared.ml.animation_tokens import MotionLayout

    data = rig("LegRig", [("Hip", None), ("Shin", "Hip"), ("FootIK", None)])
    holder = select_new("Leg", data)
    bpy.ops.object.mode_set(mode="EDIT")
    data.edit_bones["Shin"].roll = 0.7
    data.edit_bones["Hip"].tail = (0.3, 0.2, 1.0)  # a bone that leans, so its frame is not the armature's
    bpy.ops.object.mode_set(mode="POSE")
    ik = holder.pose.bones["Shin"].constraints.new("IK")
    ik.target, ik.subtarget = holder, "FootIK"
    bpy.ops.object.mode_set(mode="OBJECT")
    doc = object_document(holder)
    bones = {b["name"]: b for b in doc["armature"]["bones"]}
    assert bones["Shin"]["roll"] == pytest.approx(0.7, abs=1e-5)
    assert bones["Shin"]["constraints"][0]["params"] == {"subtarget": "FootIK"}
    layout = MotionLayout(doc["armature"])
    assert layout.names.index("FootIK") in layout.mobile  # the IK target gets a location channel
    for i, name in enumerate(layout.names):
        frame = np.array(holder.data.bones[name].matrix_local.to_3x3())
        rotation = next(
            t for t, c in zip(layout.triple_axes, layout.channels[::3], strict=True) if c.group == i
        )
        np.testing.assert_allclose(rotation, frame, atol=1e-4, err_msg=name)


def test_apply_to_selected_needs_a_selected_object(enabled):
    operators, prefs, state = enabled
    state.mode = "SELECTED"
    with pytest.raises(RuntimeError, match="Select the object to apply"):
        bpy.ops.bmt.generate()
    assert not state.is_running


def test_generate_refuses_without_specialists(enabled):
    operators, prefs, state = enabled
    for name in operators.SPECIALISTS:
        setattr(state, f"use_{name}", False)
    with pytest.raises(RuntimeError, match="Choose at least one of geometry, materials"):
        bpy.ops.bmt.generate()
    assert not state.is_running


class RecordingLayout:
    """Stands in for bpy.types.UILayout, which only exists while Blender draws a window (never in
    the background bpy module). It checks each property and operator the panel names."""

    def __init__(self, drawn: list):
        self.drawn = drawn

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.drawn)

    row = column = box = _child

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, name
        self.drawn.append(("prop", name))

    def operator(self, idname, **kwargs):
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), idname
        self.drawn.append(("operator", idname))
        return type("OperatorProperties", (), {})()

    def label(self, text="", icon="NONE"):
        self.drawn.append(("label", text))

    def progress(self, factor=0.0, type="BAR", text=""):
        self.drawn.append(("progress", text))


def draw(panel_class) -> list:
    drawn: list = []
    panel = type("DrawOnly", (), {"layout": RecordingLayout(drawn)})()
    panel_class.draw(panel, bpy.context)
    return drawn


def test_panels_draw_every_state(enabled):
    operators, prefs, state = enabled
    idle = draw(bpy.types.BMT_PT_generate)
    assert ("operator", "bmt.generate") in idle and ("prop", "face_budget") in idle
    assert [name for kind, name in idle if kind == "prop"] == [
        "prompt",
        "mode",
        "use_geometry",
        "use_materials",
        "use_modifiers",
        "use_animation",
        "face_budget",
        "seed",
        "variations",
    ]
    state.is_running, state.progress, state.status_text = True, 0.42, "Shaping the mesh"
    state.error_text = "Could not reach the generation gateway at http://127.0.0.1:9 (Connection refused)."
    running = draw(bpy.types.BMT_PT_generate)
    assert ("progress", "42%  Shaping the mesh") in running and ("operator", "bmt.cancel") in running
    assert ("label", "Could not reach the generation gateway at") in running  # wrapped, first line
    assert draw(bpy.types.BMT_PT_recent) == [("label", "Nothing generated yet in this session.")]
    operators.remember_results(state, [small_scene()])
    assert draw(bpy.types.BMT_PT_recent) == [
        ("label", "a small wooden crate (1 objects)"),
        ("operator", "bmt.insert_result"),
    ]
    state.is_running, state.error_text, state.mode = False, "", "SELECTED"
    selected = draw(bpy.types.BMT_PT_generate)
    assert ("prop", "use_geometry") not in selected and ("prop", "variations") not in selected
    assert ("label", "Select the object to apply to.") in selected
