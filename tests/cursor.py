"""A cursor helper for tests: `at("return █")` -> ("return ", 7)."""

CURSOR = "█"


def at(marked: str) -> tuple[str, int]:
    assert marked.count(CURSOR) == 1, "mark exactly one cursor with █"
    offset = marked.index(CURSOR)
    return marked.replace(CURSOR, ""), offset
