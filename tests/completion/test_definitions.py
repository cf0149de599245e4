from __future__ import annotations

import pytest

from cube_lsp.completion import definitions
from cube_lsp.completion.definitions import extract_definitions, find_definition_snippets, parse_imports
from cube_lsp.completion.snippets import Deadline
from cube_lsp.completion.types import Snippet

CURSOR = "║"
NEVER = Deadline(lambda: 0.0, 1.0)


def find(
    document: str, language_id: str, path: str, files: dict[str, str], **kwargs: object
) -> list[Snippet]:
    assert document.count(CURSOR) == 1
    offset = document.index(CURSOR)
    text = document.replace(CURSOR, "")
    options: dict[str, object] = {"documents": files, "read_file": None, "deadline": NEVER, **kwargs}
    return find_definition_snippets(text, offset, language_id, path, **options)  # type: ignore[arg-type]


def texts(found: list[Snippet]) -> list[str]:
    return [s.text for s in found]


def test_public_api() -> None:
    assert sorted(definitions.__all__) == sorted(
        [
            "Definition",
            "Import",
            "ReadFile",
            "extract_definitions",
            "find_definition_snippets",
            "import_section",
            "parse_imports",
        ]
    )


PY_UTILS = '''import os

LIMIT = 3


def helper(a: int, b: int) -> int:
    """Add two numbers."""
    c = a + b
    return c


@dataclass
class Thing:
    x: int = 0

    def method(self, y):
        return self.x + y


def unused():
    return 1
'''


def test_python_from_import_and_module_alias() -> None:
    document = (
        "from .utils import helper, Thing as T, unused\n"
        "import proj.lib.geo as geo\n\n"
        "def run():\n    t = T()\n    geo.distance(1, 2)\n    return helper(║"
    )
    files = {"proj/app/utils.py": PY_UTILS, "proj/lib/geo.py": "def distance(a, b):\n    return abs(a - b)\n"}
    found = find(document, "python", "proj/app/main.py", files)
    assert texts(found) == [
        'def helper(a: int, b: int) -> int:\n    """Add two numbers."""\n    ...',
        "def distance(a, b):\n    ...",
        "@dataclass\nclass Thing:\n    x: int = 0\n\n    def method(self, y):\n        ...",
    ]
    assert [s.path for s in found] == ["proj/app/utils.py", "proj/lib/geo.py", "proj/app/utils.py"]
    assert all(s.source == "definition" for s in found)
    assert found[0].score == 1.0 and found[0].score > found[-1].score


def test_names_only_imported_are_not_used() -> None:
    # `unused` appears only on the import line, which does not count as a use.
    found = find("from .utils import unused\n\nx = ║", "python", "p/main.py", {"p/utils.py": PY_UTILS})
    assert found == []


def test_javascript_default_and_named_imports() -> None:
    document = "import Calc, { add } from './math.js';\n\nconst c = new Calc();\nadd(║"
    files = {
        "src/math.js": (
            "/** Adds. */\nexport function add(a, b) {\n  return a + b;\n}\n"
            "export default class Calc {\n  run() { console.log(1); }\n}\n"
        )
    }
    assert texts(find(document, "javascript", "src/main.js", files)) == [
        "/** Adds. */\nexport function add(a, b) { ... }",
        "export default class Calc {\n  run() { ... }\n}",
    ]


def test_typescript_namespace_import_interface_and_arrow_function() -> None:
    document = (
        "import * as geo from '../lib/geo';\nimport { Shape } from './shape';\n\nconst s: Shape = geo.unit(║"
    )
    files = {
        "src/lib/geo.ts": "export const unit = (n: number): number => {\n  return n / n;\n};\n",
        "src/app/shape.ts": "export interface Shape {\n  w: number;\n}\n",
    }
    assert texts(find(document, "typescript", "src/app/main.ts", files)) == [
        "export const unit = (n: number): number => { ... };",
        "export interface Shape {\n  w: number;\n}",
    ]


def test_tsx_uses_the_typescript_import_reader() -> None:
    document = "import { Button } from './button';\n\nexport const App = () => <Button ║/>;\n"
    files = {
        "ui/button.tsx": (
            "export function Button(props: { label: string }) {\n  return <b>{props.label}</b>;\n}\n"
        )
    }
    assert texts(find(document, "typescriptreact", "ui/app.tsx", files)) == [
        "export function Button(props: { label: string }) { ... }"
    ]


def test_go_package_qualified_names_among_open_documents() -> None:
    document = (
        'package main\n\nimport (\n\t"fmt"\n\t"example.com/m/internal/geo"\n)\n\n'
        "func main() {\n\tp := geo.Point{}\n\tfmt.Println(geo.Dist(p, ║"
    )
    files = {
        "/w/internal/geo/geo.go": (
            "package geo\n\n// Point is a point.\ntype Point struct {\n\tX, Y float64\n}\n\n"
            "// Dist is the distance.\nfunc Dist(a, b Point) float64 {\n\treturn 0\n}\n"
        )
    }
    assert texts(find(document, "go", "/w/cmd/app/main.go", files)) == [
        "// Dist is the distance.\nfunc Dist(a, b Point) float64 { ... }",
        "// Point is a point.\ntype Point struct {\n\tX, Y float64\n}",
    ]


def test_rust_use_list_struct_impl_and_function() -> None:
    document = (
        "mod geo;\nuse crate::geo::{Point, dist};\n\n"
        "fn main() {\n    let p = Point::new(1.0, 2.0);\n    dist(&p, ║"
    )
    files = {
        "src/geo.rs": (
            "/// A point.\npub struct Point {\n    pub x: f64,\n}\n\n"
            "impl Point {\n    pub fn new(x: f64) -> Self {\n        Point { x }\n    }\n}\n\n"
            "pub fn dist(a: &Point, b: &Point) -> f64 {\n    (a.x - b.x).abs()\n}\n"
        )
    }
    assert texts(find(document, "rust", "src/main.rs", files)) == [
        "pub fn dist(a: &Point, b: &Point) -> f64 { ... }",
        "/// A point.\npub struct Point {\n    pub x: f64,\n}",
        "impl Point {\n    pub fn new(x: f64) -> Self { ... }\n}",
    ]


def test_rust_super_path_resolves_next_to_the_module() -> None:
    imports = parse_imports("use super::geo::Point;\n", "rust", "src/shapes/circle.rs")
    assert imports[0].module == "super::geo"
    assert imports[0].paths[0] == "src/shapes/geo.rs"


def test_java_class_import_and_static_import_via_read_file() -> None:
    document = (
        "package com.ex.app;\n\nimport com.ex.util.Helper;\nimport static com.ex.util.Maths.add;\n\n"
        "class Main {\n  void run() {\n    Helper h = new Helper();\n    int x = add(1, ║"
    )
    disk = {
        "src/com/ex/util/Helper.java": (
            "package com.ex.util;\n\npublic class Helper {\n  private int n;\n"
            "  public int twice(int x) {\n    return 2 * x;\n  }\n}\n"
        ),
        "src/com/ex/util/Maths.java": (
            "package com.ex.util;\n\npublic final class Maths {\n"
            "  public static int add(int a, int b) {\n    return a + b;\n  }\n}\n"
        ),
    }
    reads: list[str] = []

    def read_file(path: str) -> str | None:
        reads.append(path)
        return disk.get(path)

    found = find(document, "java", "src/com/ex/app/Main.java", {}, read_file=read_file)
    assert texts(found) == [
        "public static int add(int a, int b) { ... }",
        "public class Helper {\n  private int n;\n  public int twice(int x) { ... }\n}",
    ]
    assert set(reads) == set(disk)


def test_c_local_include_with_guard_and_prototypes() -> None:
    document = (
        '#include "geo.h"\n#include <stdio.h>\n\n'
        "int main(void) {\n    struct point p = make_point(1, 2);\n    return dist(&p, ║"
    )
    header = (
        "#ifndef GEO_H\n#define GEO_H\n\nstruct point { int x; int y; };\n\n/* Makes a point. */\n"
        "struct point make_point(int x, int y);\nint dist(const struct point *a, const struct point *b);\n"
        "static inline int zero(void) { return 0; }\n\n#endif\n"
    )
    found = find(document, "c", "src/main.c", {}, read_file={"src/geo.h": header}.get)
    assert texts(found) == [
        "int dist(const struct point *a, const struct point *b);",
        "struct point { int x; int y; }",
        "/* Makes a point. */\nstruct point make_point(int x, int y);",
    ]


def test_c_function_definition_body_is_collapsed() -> None:
    assert [
        d.text for d in extract_definitions("static int *mk(int n) {\n  return 0;\n}\n", "c", ["mk"])
    ] == ["static int *mk(int n) { ... }"]


@pytest.mark.parametrize(
    ("language_id", "source", "path", "module"),
    [
        ("python", "from ..pkg.mod import f\n", "a/b/c.py", "..pkg.mod"),
        ("javascript", "import x from './y';\n", "src/a.js", "./y"),
        ("go", 'import "example.com/z"\n', "main.go", "example.com/z"),
        ("rust", "use crate::a::b;\n", "src/main.rs", "crate::a"),
        ("java", "import a.b.C;\n", "x/Main.java", "a.b.C"),
        ("c", '#include "h.h"\n', "x.c", "h.h"),
    ],
)
def test_parse_imports(language_id: str, source: str, path: str, module: str) -> None:
    assert parse_imports(source, language_id, path)[0].module == module


def test_python_relative_import_paths() -> None:
    (imp, *_rest) = parse_imports("from ..pkg.mod import f\n", "python", "a/b/c.py")
    assert imp.paths == ("a/pkg/mod.py", "a/pkg/mod/__init__.py")
    assert imp.names == (("f", "f"),)


def test_node_packages_and_system_headers_are_skipped() -> None:
    assert parse_imports("import React from 'react';\n", "javascript", "a.js") == []
    assert parse_imports("#include <stdio.h>\n", "c", "a.c") == []


def test_expired_deadline_returns_nothing() -> None:
    expired = Deadline(lambda: 5.0, 1.0)
    document = "from .utils import helper\n\nhelper(║"
    assert find(document, "python", "p/main.py", {"p/utils.py": PY_UTILS}, deadline=expired) == []


def test_deadline_stops_before_reading_more_files() -> None:
    now = [0.0]
    reads: list[str] = []

    def read_file(path: str) -> str | None:
        reads.append(path)
        now[0] += 1.0  # each read is slow
        return None

    document = "import a.b\nimport c.d\nimport e.f\n\na.b.x(c.d.y, e.f.z, ║"
    found = find(
        document, "python", "p/main.py", {}, read_file=read_file, deadline=Deadline(lambda: now[0], 2.0)
    )
    assert found == []
    assert len(reads) == 2


def test_unknown_language_and_char_budget() -> None:
    assert find("x ║", "cobol", "a.cob", {}) == []
    document = "from .utils import helper, Thing\n\nThing(helper(║"
    found = find(document, "python", "p/main.py", {"p/utils.py": PY_UTILS}, max_chars=80)
    assert len(found) == 1


def test_multi_line_import_after_a_long_body_of_code() -> None:
    document = "import {\n  add,\n  sub,\n} from './math';\n\n" + "let x = 1;\n" * 5000 + "add(║"
    files = {"src/math.js": "export function add(a, b) {\n  return a + b;\n}\n"}
    assert texts(find(document, "javascript", "src/main.js", files)) == ["export function add(a, b) { ... }"]
