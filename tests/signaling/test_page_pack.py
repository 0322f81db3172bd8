"""Pages packed into one answer: the bundler's rules by table, then the real pages."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from pathlib import Path

import pytest

from signaling.page_pack import PackError, bundle, pack_page
from tests.signaling.conftest import Clock, make_settings, serve
from tests.signaling.fakes import FakeMedia

WEB = Path(__file__).resolve().parents[2] / "web_client"


def test_modules_come_in_import_order_each_in_its_own_scope() -> None:
    files = {
        "main.js": 'import { f, K as k } from "./a.js";\nconst x = 1;\nf(x, k);\n',
        "a.js": 'import { g } from "./b.js";\nconst x = 2;\n'
        "export function f(a, b) { return g(a + b + x); }\nexport const K = 3;\n",
        "b.js": 'import "./c.js";\nexport async function g(v) { return v; }\n',
        "c.js": "window.c = 1;\n",
    }
    code = bundle("main.js", files.__getitem__)
    # c (imported for its effect) before b before a before main; each module's `x`
    # stays its own.
    assert code.index("window.c") < code.index("m1") < code.index("m2") < code.index("m3")
    assert code.count("const x") == 2
    assert "export" not in code and "import" not in code
    assert re.search(r"const\{f:f,K:k\}=m2", code)
    assert re.search(r"return\{f,K\}", code)


@pytest.mark.parametrize(
    "files, complaint",
    [
        ({"main.js": 'import x from "./a.js";\n', "a.js": ""}, "import the packer"),
        ({"main.js": 'import * as a from "./a.js";\n', "a.js": ""}, "import the packer"),
        ({"main.js": "export default 1;\n"}, "export the packer"),
        ({"main.js": "const a = 1;\nexport { a };\n"}, "export the packer"),
        ({"main.js": 'import { y } from "./a.js";\n', "a.js": "export const x = 1;\n"}, "y"),
        (
            {
                "main.js": 'import { x } from "./a.js";\n',
                "a.js": 'import { y } from "./main.js";\n',
            },
            "cycle",
        ),
    ],
)
def test_what_the_packer_does_not_know_is_refused(files: dict[str, str], complaint: str) -> None:
    with pytest.raises(PackError, match=complaint):
        bundle("main.js", files.__getitem__)


def test_a_page_gets_its_styles_and_modules_inline_and_its_preloads_dropped() -> None:
    html = (
        '<head><link rel="stylesheet" href="/static/css/app.css">\n'
        '  <link rel="modulepreload" href="/static/js/main.js">\n</head>\n'
        '<body><script type="module" src="/static/js/main.js"></script>'
        "<script nomodule>alert(1)</script></body>"
    )
    files = {"css/app.css": "body {\n  color: red;\n}\n", "js/main.js": "console.log(1);\n"}
    page = pack_page(html, files.__getitem__)
    text = page.html.decode()
    assert "<style>body{color:red}</style>" in text
    assert "modulepreload" not in text and "/static/" not in text
    code = re.findall(r'<script type="module">(.*?)</script>', text, re.S)[0]
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert page.script_hash == f"'sha256-{digest}'"
    assert "<script nomodule>alert(1)</script>" in text
    assert gzip.decompress(page.gzipped) == page.html


def test_a_closing_script_tag_inside_a_module_is_refused() -> None:
    html = '<script type="module" src="/static/js/main.js"></script>'
    with pytest.raises(PackError, match="closing script"):
        pack_page(html, {"js/main.js": 'const s = "</script>";\n'}.__getitem__)


@pytest.mark.parametrize("page", sorted(p.stem for p in WEB.glob("*.html")))
def test_every_page_of_the_web_client_packs(page: str) -> None:
    packed = pack_page(
        (WEB / f"{page}.html").read_text(), lambda sub: (WEB / sub).read_text(encoding="utf-8")
    )
    assert b"/static/js/" not in packed.html


def test_the_projector_page_is_small() -> None:
    """Issue 16: on a 256 kbit/s link the page loads in 3 s; 32 kB in gzip is one second
    of the link and about two round trips of a new TCP connection's window."""
    packed = pack_page(
        (WEB / "classroom.html").read_text(), lambda sub: (WEB / sub).read_text(encoding="utf-8")
    )
    assert len(packed.gzipped) < 32_000


async def test_a_packed_page_is_served_compressed_with_its_script_allowed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    web = settings.web_client_dir
    (web / "js").mkdir()
    (web / "js" / "classroom.js").write_text("document.title = 'packed';\n")
    (web / "classroom.html").write_text(
        '<html><script type="module" src="/static/js/classroom.js"></script></html>'
    )
    async with serve(settings, FakeMedia(), Clock()) as srv:
        answer = await srv.http.get("/classroom", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["cache-control"] == "no-store"
    code = re.findall(r'<script type="module">(.*?)</script>', answer.text, re.S)[0]
    assert "packed" in code
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in answer.headers["content-security-policy"]
