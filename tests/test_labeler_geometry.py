"""Quality checks, duplicate hashing, shape descriptors, clustering, splits and shards on
constructed meshes, where the right answer is known exactly."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from services.labeler import geometry
from services.labeler.dataset import assign_splits, tar_bytes
from services.labeler.dedup import Candidate, cluster
from services.labeler.geometry import MeshArrays
from shared.settings import get_settings
from tests.conftest import REPO

CUBE_VERTICES = [[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)]
CUBE_FACES = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


def mesh(vertices: list, faces: list, loose_edges: list | None = None) -> MeshArrays:
    return MeshArrays.from_doc({"vertices": vertices, "faces": faces, "loose_edges": loose_edges or []})


def grid(n: int) -> MeshArrays:
    """An n x n quad grid on the unit square (n*n faces)."""
    vertices = [[i / n, j / n, 0.0] for i in range(n + 1) for j in range(n + 1)]
    faces = [
        [i * (n + 1) + j, (i + 1) * (n + 1) + j, (i + 1) * (n + 1) + j + 1, i * (n + 1) + j + 1]
        for i in range(n)
        for j in range(n)
    ]
    return mesh(vertices, faces)


def failed(m: MeshArrays, scale: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[str]:
    return [code for code, _ in geometry.quality(m, get_settings(), scale)["failed"]]


def test_a_clean_cube_passes_every_check() -> None:
    flags = geometry.quality(mesh(CUBE_VERTICES, CUBE_FACES), get_settings())
    assert flags["failed"] == []
    assert flags["non_manifold_share"] == 0.0 and flags["boundary_share"] == 0.0
    assert flags["faces"] == 6 and flags["diagonal"] == pytest.approx(2 * 3**0.5, rel=1e-6)


@pytest.mark.parametrize(
    ("name", "m", "code"),
    [
        ("no faces", mesh(CUBE_VERTICES, []), "empty"),
        ("no vertices", mesh([], []), "empty"),
        ("index out of range", mesh(CUBE_VERTICES, [[0, 1, 99]]), "degenerate"),
        (
            "all points on a line",
            mesh([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], [[0, 1, 2], [1, 2, 3]]),
            "degenerate",
        ),
        ("single triangle", mesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]), "too_few_faces"),
    ],
)
def test_each_broken_mesh_gets_its_reason(name: str, m: MeshArrays, code: str) -> None:
    assert code in failed(m), name


def test_zero_area_faces() -> None:
    cube = mesh(CUBE_VERTICES, CUBE_FACES)
    # Three collinear-vertex slivers on top of six good faces: a third of the faces have no area.
    slivers = [[0, 1, 1], [2, 3, 3], [4, 5, 5]]
    assert "zero_area_faces" in failed(mesh(CUBE_VERTICES, CUBE_FACES + slivers))
    assert "zero_area_faces" not in failed(cube)


def test_non_manifold_edges() -> None:
    # Every face doubled (a common export accident): each edge is used by four faces.
    assert "non_manifold" in failed(mesh(CUBE_VERTICES, CUBE_FACES + CUBE_FACES))


def test_loose_geometry() -> None:
    stray = [[5.0 + i, 5.0, 5.0] for i in range(4)]  # four vertices used by no face
    assert "loose_geometry" in failed(mesh(CUBE_VERTICES + stray, CUBE_FACES))
    edges = [(i, i + 1) for i in range(7)] * 2  # more loose edges than face edges
    assert "loose_geometry" in failed(mesh(CUBE_VERTICES, CUBE_FACES, edges))


def test_face_count_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMT_QUALITY_MAX_FACES", "50")
    get_settings.cache_clear()
    assert "too_many_faces" in failed(grid(8))
    assert "too_many_faces" not in failed(grid(7))


def test_scale_outliers_count_the_object_scale() -> None:
    tiny = mesh((np.asarray(CUBE_VERTICES) * 1e-5).tolist(), CUBE_FACES)
    assert "scale_outlier" in failed(tiny)
    cube = mesh(CUBE_VERTICES, CUBE_FACES)
    assert "scale_outlier" in failed(cube, scale=(1e5, 1e5, 1e5))
    assert "scale_outlier" not in failed(cube, scale=(2.0, 2.0, 2.0))


def _transformed(m: MeshArrays, rng: np.random.Generator) -> MeshArrays:
    """Same shape: vertices shuffled, faces re-indexed, rotated to another start and reordered,
    then translated and scaled."""
    order = rng.permutation(len(m.vertices))
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    vertices = m.vertices[order] * 3.7 + np.array([10.0, -4.0, 2.5])
    faces = [[int(new_index[i]) for i in f] for f in m.faces]
    faces = [f[k % len(f) :] + f[: k % len(f)] for k, f in enumerate(faces)]
    faces = [faces[i] for i in rng.permutation(len(faces))]
    return mesh(vertices.tolist(), faces)


def test_geometry_hash_ignores_vertex_order_position_and_scale() -> None:
    rng = np.random.default_rng(7)
    base = grid(6)
    base.vertices[:, 2] = rng.random(len(base.vertices)) * 0.3  # a bumpy, asymmetric surface
    bits = get_settings().dedup_quantization_bits
    reference = geometry.geometry_hash(base, bits)
    for _ in range(3):
        assert geometry.geometry_hash(_transformed(base, rng), bits) == reference
    moved = MeshArrays(base.vertices.copy(), base.faces, [])
    moved.vertices[5] += [0.0, 0.0, 0.2]
    assert geometry.geometry_hash(moved, bits) != reference
    flipped = mesh(base.vertices.tolist(), [f[::-1] for f in base.faces])  # winding matters
    assert geometry.geometry_hash(flipped, bits) != reference


def test_shape_descriptor_is_invariant_and_separates_shapes() -> None:
    rng = np.random.default_rng(3)
    cube = mesh(CUBE_VERTICES, CUBE_FACES)
    same = np.asarray([geometry.shape_descriptor(cube, seed=1)])
    moved = np.asarray([geometry.shape_descriptor(_transformed(cube, rng), seed=2)])
    flat = np.asarray([geometry.shape_descriptor(grid(4), seed=1)])
    threshold = get_settings().dedup_near_threshold
    assert geometry.descriptor_distance(same, moved)[0, 0] < threshold
    assert geometry.descriptor_distance(same, flat)[0, 0] > 3 * threshold


def test_mirror_axes() -> None:
    assert geometry.mirror_axes(mesh(CUBE_VERTICES, CUBE_FACES)) == ["x", "y", "z"]
    wedge = mesh([[0, 0, 0], [3, 0, 0], [0, 1, 0], [0, 0, 2]], [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    assert geometry.mirror_axes(wedge) == []


def test_clusters_are_leader_based_and_independent_of_input_order() -> None:
    def descriptor(first_bin: float) -> tuple[float, ...]:
        histogram = [first_bin, 1.0 - first_bin] + [0.0] * (geometry.D2_BINS - 2)
        return (*histogram, 1.0, 0.5, 0.5)

    a = Candidate("a/x", "h1", descriptor(0.5))
    b = Candidate("b/x", "h2", descriptor(0.5))  # same shape as a, other hash: near duplicate
    c = Candidate("c/x", "h1", descriptor(1.0))  # same hash as a: exact duplicate
    d = Candidate("d/x", "h3", descriptor(1.0))  # different from a
    leaders = cluster([d, c, b, a], threshold=0.1)
    assert leaders == cluster([a, b, c, d], threshold=0.1)
    assert leaders == {"a/x": "a/x", "b/x": "a/x", "c/x": "a/x", "d/x": "d/x"}


def test_splits_keep_groups_whole_and_follow_the_seed() -> None:
    sizes = {f"pack{i:02d}": 1 + (i * 7) % 11 for i in range(30)}
    first = assign_splits(sizes, (0.8, 0.1, 0.1), seed=1)
    assert first == assign_splits(dict(reversed(sizes.items())), (0.8, 0.1, 0.1), seed=1)
    assert set(first) == set(sizes) and set(first.values()) == {"train", "val", "test"}
    total = sum(sizes.values())
    train = sum(n for g, n in sizes.items() if first[g] == "train")
    assert 0.7 < train / total < 0.9
    assert any(assign_splits(sizes, (0.8, 0.1, 0.1), seed=s) != first for s in range(2, 6))
    assert set(assign_splits({"a": 5, "b": 1, "c": 1}, (0.8, 0.1, 0.1), seed=0).values()) == {
        "train",
        "val",
        "test",
    }


def test_shards_are_deterministic_posix_tars() -> None:
    members = [("b.json", b'{"id": "b"}'), ("a.json", b'{"id": "a"}')]
    data = tar_bytes(members)
    assert data == tar_bytes(list(reversed(members)))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == ["a.json", "b.json"]
        assert all(i.mtime == 0 and i.uid == 0 and i.gid == 0 and i.uname == "" for i in infos)
        assert tar.extractfile("b.json").read() == b'{"id": "b"}'


# The diagonals of random boxes, one hex float a line, in a process whose OpenBLAS kernels the
# environment chooses.
_DIAGONALS = """
import numpy as np
from services.labeler.geometry import MeshArrays
rng = np.random.default_rng(5)
for scale in rng.choice([1e-3, 1.0, 1e3], size=2000):
    print(MeshArrays(rng.random((8, 3)) * scale, [], []).diagonal().hex())
"""


def test_diagonals_do_not_depend_on_the_blas_kernels() -> None:
    """Issue 19: OpenBLAS's AVX-512 (SkylakeX) kernels compute a dot product with fused
    multiply-adds, so np.linalg.norm gave about one diagonal in ten another last bit than on an
    AVX2 machine, and the diagonal scales the quality thresholds and the D2 histogram. (Their
    small-vector path needs FMA only, so an AVX2 machine runs it too.)"""
    printed = {}
    for core in ("Haswell", "SkylakeX"):
        done = subprocess.run(
            [sys.executable, "-c", _DIAGONALS],
            env={**os.environ, "OPENBLAS_CORETYPE": core},
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if done.returncode == -signal.SIGILL:
            pytest.skip(f"this CPU cannot run OpenBLAS's {core} kernels")
        assert done.returncode == 0, done.stderr
        printed[core] = done.stdout.split()
    assert len(printed["Haswell"]) == 2000
    assert printed["Haswell"] == printed["SkylakeX"]
