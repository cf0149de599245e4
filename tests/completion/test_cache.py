from cube_lsp.completion.cache import CompletionCache

TEXT = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
CURSOR = TEXT.index("return ") + len("return ")


def typed(text: str, at: int, chars: str) -> str:
    return text[:at] + chars + text[at:]


def test_exact_hit_and_typed_ahead():
    cache = CompletionCache()
    cache.store("u", "m", TEXT, CURSOR, "a + b", 0)
    assert cache.lookup("u", "m", TEXT, CURSOR).text == "a + b"
    hit = cache.lookup("u", "m", typed(TEXT, CURSOR, "a +"), CURSOR + 3)
    assert hit.text == " b"
    assert hit.typed == "a +"


def test_misses_when_typing_diverges_or_context_changes():
    cache = CompletionCache()
    cache.store("u", "m", TEXT, CURSOR, "a + b", 0)
    assert cache.lookup("u", "m", typed(TEXT, CURSOR, "a -"), CURSOR + 3) is None
    assert cache.lookup("u", "other-model", TEXT, CURSOR) is None
    assert cache.lookup("v", "m", TEXT, CURSOR) is None
    changed_suffix = TEXT.replace("print", "pront")
    assert cache.lookup("u", "m", changed_suffix, CURSOR) is None
    changed_prefix = TEXT.replace("def add", "def sub")
    assert cache.lookup("u", "m", changed_prefix, CURSOR) is None
    # typing the whole completion leaves nothing to show
    assert cache.lookup("u", "m", typed(TEXT, CURSOR, "a + b"), CURSOR + 5) is None


def test_bounded_per_document_and_overall():
    cache = CompletionCache(max_entries=10, per_document=3)
    for i in range(5):
        cache.store("u", "m", TEXT, CURSOR, f"c{i}", 0)
    assert len(cache) == 3
    for i in range(20):
        cache.store(f"doc{i}", "m", TEXT, CURSOR, "x", 0)
    assert len(cache) == 10
    cache.clear()
    assert len(cache) == 0
