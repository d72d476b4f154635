"""The exact LRU/TTL cache and typed-through reuse."""

from dgls.cache import ExactCache, TypedThrough


def test_lru_evicts_the_least_recent():
    cache = ExactCache(2, 60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3


def test_entries_expire():
    now = [0.0]
    cache = ExactCache(10, 5, clock=lambda: now[0])
    cache.put("k", "v")
    now[0] = 4.9
    assert cache.get("k") == "v"
    now[0] = 10.0
    assert cache.get("k") is None and len(cache) == 0


def test_typed_through_continues_matching_suggestions_only():
    tt = TypedThrough()
    tt.remember("u", "x = ", "\n", ["compute(a)", "count"])
    assert tt.continue_("u", "x = co", "\n") == ["mpute(a)", "unt"]
    assert tt.continue_("u", "x = com", "\n") == ["pute(a)"]
    assert tt.continue_("u", "x = q", "\n") is None  # typed something else
    assert tt.continue_("u", "x = co", "\nchanged") is None  # the rest of the file changed
    assert tt.continue_("u", "x = count", "\n") is None  # fully typed: nothing left
    tt.forget("u")
    assert tt.continue_("u", "x = co", "\n") is None
