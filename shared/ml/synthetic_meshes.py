"""Captioned primitive meshes (boxes, cylinders with n-gon caps, cones, prisms, stairs, tables...).

Pure numpy. Authored the way a Blender user would: quads on the sides, n-gon caps, several
components where an object is made of parts. Used by the tests, as the fallback demo dataset of
the geometry trainer, and as a reference set for evaluation when no real dataset is given.
Each item follows the geometry dataset item format (``id``, ``category``, ``captions``, ``mesh``).
"""

from __future__ import annotations

import numpy as np

Mesh = tuple[np.ndarray, list[list[int]]]

CATEGORIES = ("box", "cylinder", "cone", "prism", "stairs", "table", "stool", "shelf")


def box(size=(1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0)) -> Mesh:
    sx, sy, sz = (s / 2 for s in size)
    corners = np.array([[x, y, z] for z in (-sz, sz) for y in (-sy, sy) for x in (-sx, sx)]) + center
    faces = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]]
    return corners, faces


def cylinder(sides=8, radius=0.5, height=1.0, top_radius=None, center=(0.0, 0.0, 0.0)) -> Mesh:
    """A closed cylinder (or frustum) with n-gon caps; top_radius=0 makes a cone."""
    top_radius = radius if top_radius is None else top_radius
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], 1)
    bottom = np.column_stack([ring * radius, np.full(sides, -height / 2)])
    if top_radius == 0:
        verts = np.vstack([bottom, [[0, 0, height / 2]]]) + center
        faces = [[(i + 1) % sides, i, sides] for i in range(sides)]
        return verts, [list(range(sides))[::-1], *[f[::-1] for f in faces]]
    top = np.column_stack([ring * top_radius, np.full(sides, height / 2)])
    verts = np.vstack([bottom, top]) + center
    faces = [[i, (i + 1) % sides, sides + (i + 1) % sides, sides + i] for i in range(sides)]
    faces += [list(range(sides))[::-1], list(range(sides, 2 * sides))]
    return verts, faces


def merge(*parts: Mesh) -> Mesh:
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(np.asarray(v, dtype=np.float64))
        faces += [[i + offset for i in face] for face in f]
        offset += len(v)
    return np.vstack(verts), faces


def stairs(steps=4, width=1.0, depth=1.0, height=1.0) -> Mesh:
    return merge(
        *[
            box(
                (width, depth / steps, height * (k + 1) / steps),
                (0, depth * (k + 0.5) / steps, height * (k + 1) / steps / 2),
            )
            for k in range(steps)
        ]
    )


def table(width=1.2, depth=0.8, height=0.75, leg=0.06, top=0.05) -> Mesh:
    legs = [
        box((leg, leg, height - top), (sx * (width / 2 - leg), sy * (depth / 2 - leg), (height - top) / 2))
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    return merge(box((width, depth, top), (0, 0, height - top / 2)), *legs)


def stool(radius=0.25, height=0.5, legs=3, sides=12) -> Mesh:
    seat = cylinder(sides, radius, 0.05, center=(0, 0, height - 0.025))
    parts = [seat]
    for k in range(legs):
        a = 2 * np.pi * k / legs
        parts.append(
            cylinder(
                6,
                0.03,
                height - 0.05,
                center=(0.7 * radius * np.cos(a), 0.7 * radius * np.sin(a), (height - 0.05) / 2),
            )
        )
    return merge(*parts)


def shelf(levels=3, width=1.0, depth=0.3, height=1.2, board=0.03) -> Mesh:
    sides = [box((board, depth, height), (sx * (width - board) / 2, 0, height / 2)) for sx in (-1, 1)]
    boards = [
        box((width - 2 * board, depth, board), (0, 0, board / 2 + k * (height - board) / (levels - 1)))
        for k in range(levels)
    ]
    return merge(*sides, *boards)


def _item(rng: np.random.Generator, category: str) -> tuple[Mesh, list[str]]:
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if category == "box":
        size = (u(0.3, 1.5), u(0.3, 1.5), u(0.3, 1.5))
        kind = "cube" if max(size) / min(size) < 1.2 else "box"
        return box(size), [f"a {kind}", f"a simple {kind}", "a rectangular block"]
    if category == "cylinder":
        n = int(rng.choice([6, 8, 12, 16, 24, 32]))
        return cylinder(n, u(0.2, 0.6), u(0.3, 1.5)), [
            f"a cylinder with {n} sides",
            "a cylinder",
            "a round column",
        ]
    if category == "cone":
        n = int(rng.choice([6, 8, 12, 16, 24]))
        return cylinder(n, u(0.2, 0.6), u(0.4, 1.2), top_radius=0), [
            "a cone",
            f"a cone with {n} sides",
            "a pointed cone",
        ]
    if category == "prism":
        n = int(rng.choice([3, 5, 6]))
        names = {3: "triangular", 5: "pentagonal", 6: "hexagonal"}
        return cylinder(n, u(0.3, 0.6), u(0.3, 1.5)), [f"a {names[n]} prism", "a prism", f"a {n}-sided prism"]
    if category == "stairs":
        n = int(rng.integers(3, 8))
        return stairs(n, u(0.6, 1.5), u(0.8, 1.5), u(0.6, 1.2)), [
            f"stairs with {n} steps",
            "a staircase",
            "steps",
        ]
    if category == "table":
        return table(u(0.8, 1.8), u(0.5, 1.0), u(0.6, 0.9), u(0.04, 0.1)), [
            "a table",
            "a wooden table",
            "a table with four legs",
        ]
    if category == "stool":
        n = int(rng.integers(3, 5))
        return stool(u(0.15, 0.3), u(0.4, 0.7), n), ["a stool", f"a round stool with {n} legs", "a bar stool"]
    if category == "shelf":
        n = int(rng.integers(2, 6))
        return shelf(n, u(0.6, 1.4), u(0.2, 0.4), u(0.8, 1.8)), [
            "a shelf",
            f"a bookshelf with {n} shelves",
            "shelves",
        ]
    raise ValueError(f"unknown synthetic category {category!r}; known: {', '.join(CATEGORIES)}")


def synthetic_items(count: int, seed: int = 0, split: str = "train") -> list[dict]:
    """``count`` dataset items cycling through the categories, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split)])
    items = []
    for k in range(count):
        category = CATEGORIES[k % len(CATEGORIES)]
        (verts, faces), captions = _item(rng, category)
        items.append(
            {
                "id": f"synthetic-{split}-{seed}-{k}",
                "category": category,
                "captions": captions,
                "mesh": {"vertices": verts.tolist(), "faces": faces},
                "license": "CC0-1.0",
                "attribution": None,
                "pack": f"synthetic-{split}",
            }
        )
    return items
