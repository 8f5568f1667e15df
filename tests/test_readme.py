"""The README's first screen and its configuration table stay true."""

from tests.conftest import REPO
from tools.settings_table import README, render


def test_configuration_table_lists_every_setting():
    text = README.read_text()
    assert render(text) == text, "run `python -m tools.settings_table` to refresh the README"


def test_first_screen_gives_the_two_commands():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:30])
    assert "make demo" in first_screen and "make test" in first_screen
