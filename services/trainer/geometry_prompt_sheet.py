"""The fixed prompt sheet every geometry generator is rendered on: everyday prompts a new user would
type, several per category, each with the taxonomy category (services/labeler/taxonomy.py) a person
would expect the answer to belong to."""

from __future__ import annotations

PROMPT_SHEET: tuple[tuple[str, str], ...] = (
    ("a wooden chair", "furniture"),
    ("a table", "furniture"),
    ("a sofa", "furniture"),
    ("a bookshelf", "furniture"),
    ("a low poly tree", "plant"),
    ("a pine tree", "plant"),
    ("a mushroom", "plant"),
    ("a sword", "weapon"),
    ("an axe", "weapon"),
    ("a shield", "weapon"),
    ("a house", "building"),
    ("a stone tower", "building"),
    ("a wooden fence", "building"),
    ("a barrel", "container"),
    ("a wooden crate", "container"),
    ("a treasure chest", "container"),
    ("a car", "vehicle"),
    ("a boat", "vehicle"),
    ("a rock", "terrain"),
    ("a boulder", "terrain"),
    ("a lamp", "lighting"),
    ("a lantern", "lighting"),
    ("a street light", "lighting"),
    ("an apple", "food"),
)
