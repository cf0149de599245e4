from __future__ import annotations

import itertools

from cube_lsp.completion import snippets
from cube_lsp.completion.snippets import Deadline, RecentFiles, find_similar_snippets, jaccard, window_tokens


class FakeClock:
    """A clock that advances ``step`` seconds each time it is read (no sleeping)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        value = self.now
        self.now += self.step
        return value


NEVER = Deadline(FakeClock(), 1.0)

CURRENT = (
    "def load_users(path):\n    with open(path) as handle:\n        rows = parse_csv(handle)\n"
    "    return [User.from_row(r) for r in rows]\n"
)
SIMILAR = (
    "def parse_csv(handle):\n    rows = []\n    for line in handle:\n"
    "        rows.append(line.split(','))\n    return rows\n"
)
UNRELATED = "fn render(frame: &mut Frame) {\n    frame.clear(Color::BLACK);\n    draw_sprites(frame);\n}\n"


def store(**files: str) -> RecentFiles:
    recent = RecentFiles()
    for name, text in files.items():
        recent.update(f"file:///w/{name}", f"/w/{name}", None, text)
    return recent


def test_public_api() -> None:
    assert sorted(snippets.__all__) == sorted(
        [
            "DEFAULT_SOURCE_BUDGET_S",
            "Clock",
            "Deadline",
            "RecentFiles",
            "find_similar_snippets",
            "jaccard",
            "window_tokens",
        ]
    )


def test_window_tokens_drop_keywords_and_single_letters() -> None:
    assert window_tokens("def parse_csv(handle):\n    return x + rows") == {"parse_csv", "handle", "rows"}


def test_jaccard() -> None:
    a, b = frozenset({"x1", "y1", "z1"}), frozenset({"y1", "z1", "w1"})
    assert jaccard(a, b) == 2 / 4
    assert jaccard(a, a) == 1.0
    assert jaccard(a, frozenset()) == 0.0


def test_recent_files_is_a_bounded_lru() -> None:
    recent = RecentFiles(max_files=2)
    recent.update("u:a", "a.py", "python", "a")
    recent.update("u:b", "b.py", "python", "b")
    recent.update("u:a", "a.py", "python", "a2")  # touching a makes b the oldest
    recent.update("u:c", "c.py", "python", "c")
    assert recent.uris() == ["u:a", "u:c"]
    assert recent.get("u:a") == "a2"
    assert recent.texts() == {"a.py": "a2", "c.py": "c"}
    recent.remove("u:a")
    assert "u:a" not in recent
    assert len(recent) == 1


def test_recent_files_limit_the_size_of_a_file() -> None:
    recent = RecentFiles(max_file_chars=10)
    recent.update("u:a", "a.py", None, "x" * 100)
    assert recent.get("u:a") == "x" * 10


def test_most_similar_file_ranks_first_and_current_file_is_excluded() -> None:
    recent = store(current=CURRENT, similar=SIMILAR, unrelated=UNRELATED)
    found = find_similar_snippets(
        recent, CURRENT, len(CURRENT), "file:///w/current", deadline=NEVER, min_score=0.0
    )
    assert [s.path for s in found] == ["/w/similar"]  # unrelated shares no identifier
    assert found[0].source == "recent"
    assert found[0].text == SIMILAR.rstrip("\n")
    assert 0 < found[0].score < 1


def test_windows_of_one_file_do_not_overlap_and_respect_limits() -> None:
    body = "".join(f"rows_{i} = parse_csv(handle_{i})\n" for i in range(200))
    recent = RecentFiles(window_lines=10)
    recent.update("u:big", "big.py", None, body)
    found = find_similar_snippets(
        recent, CURRENT, len(CURRENT), "u:current", deadline=NEVER, max_snippets=3, min_score=0.0
    )
    assert len(found) == 3
    starts = sorted(body.index(s.text) for s in found)
    assert all(len(s.text.splitlines()) <= 10 for s in found)
    assert all(body[a:b].count("\n") >= 10 for a, b in itertools.pairwise(starts))
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)
    limited = find_similar_snippets(
        recent, CURRENT, len(CURRENT), "u:current", deadline=NEVER, max_chars=400, min_score=0.0
    )
    assert sum(len(s.text) for s in limited) <= 400


def test_min_score_filters_weak_matches() -> None:
    recent = store(similar=SIMILAR)
    assert find_similar_snippets(recent, CURRENT, len(CURRENT), "x", deadline=NEVER, min_score=0.99) == []


def test_expired_deadline_returns_nothing() -> None:
    recent = store(similar=SIMILAR)
    expired = Deadline(FakeClock(), 0.0)
    assert find_similar_snippets(recent, CURRENT, len(CURRENT), "x", deadline=expired, min_score=0.0) == []


def test_slow_source_is_cut_off_and_keeps_what_it_has() -> None:
    recent = RecentFiles()
    for i in range(10):
        recent.update(f"u:{i}", f"f{i}.py", None, SIMILAR.replace("rows", f"rows{i}") + "handle_extra = 1\n")
    clock = FakeClock(step=0.01)  # every clock read costs 10 ms
    deadline = Deadline.after(clock, 0.045)
    found = find_similar_snippets(
        recent, CURRENT, len(CURRENT), "u:current", deadline=deadline, min_score=0.0
    )
    assert 0 < len(found) < 5
    assert {s.path for s in found} <= {"f9.py", "f8.py", "f7.py"}  # most recent first
    # The windows built before the deadline are kept: a later call with time to spare sees all files.
    everything = find_similar_snippets(
        recent, CURRENT, len(CURRENT), "u:current", deadline=NEVER, min_score=0.0
    )
    assert len(everything) == 5


def test_snippets_for_uses_the_injected_clock() -> None:
    clock = FakeClock()
    recent = RecentFiles(clock=clock)
    recent.update("u:cur", "cur.py", "python", CURRENT)
    recent.update("u:sim", "sim.py", "python", SIMILAR)
    found = recent.snippets_for("u:cur", CURRENT, len(CURRENT))
    assert [s.path for s in found] == ["sim.py"]
    assert clock.reads > 0


def test_empty_cursor_window_finds_nothing() -> None:
    recent = store(similar=SIMILAR)
    assert find_similar_snippets(recent, "", 0, "x", deadline=NEVER) == []
