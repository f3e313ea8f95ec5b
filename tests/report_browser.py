"""Open a Snakemake report in headless Chromium, click through it, read what the page shows.

The report is a JavaScript application: its menus exist only once a browser has run it. A
copy of the report gets a small script that clicks the named links one after another (as a
person would: category, subcategory; "@view" opens the first listed result); Chromium runs
it with a virtual time budget and returns the rendered DOM (``--dump-dom``) or a screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

CLICKER = """<script>
window.addEventListener("load", () => {
  const texts = %s;
  const step = (i) => {
    if (i === texts.length) { document.body.setAttribute("data-clicked", "all"); return; }
    const hit = texts[i] === "@view"  // the first result's "eye" (view) button
      ? document.querySelector('a[iconname="eye"]')
      : [...document.querySelectorAll("a")].find((el) => el.textContent.trim() === texts[i]);
    if (!hit) { document.body.setAttribute("data-missing", texts[i]); return; }
    hit.click();
    setTimeout(() => step(i + 1), 800);
  };
  setTimeout(() => step(0), 1500);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _page_with_clicks(report: Path, clicks: Sequence[str], folder: Path) -> Path:
    html = report.read_text(encoding="utf-8")
    end = html.rfind("</body>")
    page = folder / "page.html"
    page.write_text(html[:end] + CLICKER % json.dumps(list(clicks)) + html[end:], "utf-8")
    return page


def _run(args: list[str], page: Path, profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--virtual-time-budget=20000", *args, page.as_uri(),
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, check=True)


def rendered_body(report: Path, clicks: Sequence[str] = ()) -> str:
    """The page's <body> after the clicks, scripts and styles removed.

    Raises AssertionError naming a link that was not found.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        page = _page_with_clicks(report, clicks, folder)
        dom = _run(["--dump-dom"], page, folder / "profile").stdout
    body = dom[dom.find("<body") :]
    missing = re.search(r'data-missing="([^"]*)"', body[:2000])
    assert not missing, f"no link {missing.group(1)!r} on the report page"
    assert 'data-clicked="all"' in body[:2000], "the report did not finish rendering"
    return re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)


def visible_text(body: str) -> str:
    """The text of a rendered body, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def screenshot(report: Path, path: Path, clicks: Sequence[str] = ()) -> None:
    """A PNG of the page after the clicks (1400x1000)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        page = _page_with_clicks(report, clicks, folder)
        _run([f"--screenshot={path}", "--window-size=1400,1000"], page, folder / "profile")
