"""docs/worlds.md is the table the code generates, and every world argument has a meaning."""

from pathlib import Path

from chatir_env.cli import main as cli_main
from chatir_env.worlds import world_names
from chatir_env.worlds.doc import args_section, markdown, world_arguments

PAGE = Path(__file__).resolve().parent.parent / "docs" / "worlds.md"


def test_docs_worlds_md_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == markdown(), "regenerate it: chatir worlds > docs/worlds.md"


def test_every_world_argument_has_a_meaning():
    for name in world_names():
        rows = world_arguments(name)
        assert rows, name
        missing = [arg for arg, _, meaning in rows if not meaning]
        assert not missing, f"world {name!r}: no Args entry for {missing}"


def test_shapes_arguments_and_defaults_come_from_the_signature():
    rows = {arg: (default, meaning) for arg, default, meaning in world_arguments("shapes_oracle")}
    assert rows["retriever"][0] == "'exact'"  # the registered partial's default, not the builder's "learned"
    assert rows["corpus_size"] == ("50000", "scenes in the corpus (at least 10); the benchmark's is 50,000.")
    assert "| `corpus_size` | `50000` | scenes in the corpus" in markdown()


def test_args_section_parser():
    doc = """Summary.

    Args:
        a: first line
            continued.
        b, c: shared meaning.
        d: one: with a colon.

    Returns:
        e: not an argument.
    """
    assert args_section(doc) == {"a": "first line continued.", "b": "shared meaning.", "c": "shared meaning.",
                                 "d": "one: with a colon."}
    assert args_section("No sections.") == {} and args_section(None) == {}


def test_chatir_worlds_check(tmp_path, capsys):
    assert cli_main(["worlds", "--check", str(PAGE)]) == 0
    stale = tmp_path / "worlds.md"
    stale.write_text(markdown().replace("scenes in the corpus", "scenes"))
    assert cli_main(["worlds", "--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert cli_main(["worlds"]) == 0 and capsys.readouterr().out == markdown()
