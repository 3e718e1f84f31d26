"""The report page in a real browser: Debian's headless Chromium driven by Selenium (issue 19).

The page of the small report scenario (tests/helpers/report_records.py: runs under the published
protocol, smoke runs, a failed run, an unreadable file, figures of three shapes) is opened from its
folder by a ``file://`` URL at 1400 px and at 420 px. At both widths: every image has loaded
(``naturalWidth > 0``), the page body does not overflow horizontally (wide tables scroll inside
their own box; the claims table becomes one block per claim, and with every fold open — each
claim's comparison rows, each cell's seeds — still nothing overflows, and every claim shows its
verdict, intervals, Holm p, published support and power on screen), and every link points at something
that exists (a file of the folder, or an element of the page). Chromium and ChromeDriver come from
Debian (``apt-get install chromium chromium-driver``; ``.ci/run`` installs them); without them the
test is skipped and says so. ``BIOREG_SCREENSHOTS=<dir>`` keeps a screenshot per width there.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bioreg.results.report_page import write_report
from helpers.report_records import scenario_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (as root: apt-get install -y chromium "
    "chromium-driver; .ci/run does it when it can)",
)

#: Chromium on a machine without network or display (docs: the workplace's machine notes)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    write_report(scenario_report(tmp), tmp / "report")
    return tmp / "report" / "index.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()  # stops Chromium and the chromedriver this fixture started


def _open(driver, page: Path, width: int) -> None:
    driver.set_window_size(width, 1000)
    driver.get(page.as_uri())
    for _ in range(100):
        if driver.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"
        ):
            break
        time.sleep(0.05)
    # the layout width Chromium gives the page (the window minus its frame)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:  # headless windows can differ by a few px; size the viewport itself
        driver.set_window_size(width + (width - inner), 1000)
        driver.get(page.as_uri())


_LINKS = """
return Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href]);
"""
_OVERFLOW = """
const d = document.documentElement;
const wide = Array.from(document.body.querySelectorAll('*')).filter(e => {
  const r = e.getBoundingClientRect(); return r.right > d.clientWidth + 1 && !e.closest('.scroll');
}).map(e => e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''));
return [d.scrollWidth, d.clientWidth, document.body.scrollWidth, wide.slice(0, 10)];
"""


#: the claim statistics' columns of the claims table (report.html.j2)
_CLAIM_COLUMNS = ("verdict", "interval(s)", "Holm p", "published support", "power")
_CLAIM_CELLS = """
const labels = arguments[0];
return Array.from(document.querySelectorAll('#claims-table tr.claim-row')).flatMap(tr => labels.map(l => {
  const td = tr.querySelector('td[data-label="' + l + '"]'); const r = td.getBoundingClientRect();
  return [tr.id, l, td.innerText, r.right, r.width > 0 && r.height > 0];
}));
"""


@pytest.mark.parametrize("width", [1400, 420])
def test_the_page_in_chromium(browser, page: Path, width: int) -> None:
    _open(browser, page, width)
    assert browser.execute_script("return window.innerWidth") == width
    # every image loaded
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert len(imgs) >= 2, imgs  # a figure per table with runs
    assert [src for src, done, w in imgs if not (done and w > 0)] == []
    # no horizontal overflow of the page body; wide grids scroll inside their own box
    scroll_w, client_w, body_w, wide = browser.execute_script(_OVERFLOW)
    assert scroll_w <= client_w and body_w <= client_w, (scroll_w, client_w, body_w, wide)
    assert wide == []
    claims = browser.execute_script(
        "const r = document.getElementById('claims-table').getBoundingClientRect();"
        "return [r.right, document.documentElement.clientWidth]"
    )
    assert claims[0] <= claims[1] + 1, claims  # the claims table fits the screen (stacked at 420 px)
    # every claim shows its statistics, each inside the screen, even with every fold open
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    scroll_w, client_w, body_w, wide = browser.execute_script(_OVERFLOW)
    assert scroll_w <= client_w and body_w <= client_w and wide == [], (scroll_w, client_w, wide)
    cells = browser.execute_script(_CLAIM_CELLS, list(_CLAIM_COLUMNS))
    assert len(cells) == 4 * len(_CLAIM_COLUMNS), cells  # 4 claims (helpers.report_records.CLAIMS)
    for claim, label, text, right, visible in cells:
        assert visible and text.strip() and right <= client_w + 1, (claim, label, text, right)
    texts = {(c, lab): t for c, lab, t, _, _ in cells}
    assert texts[("claim-c-pairs", "verdict")].startswith("✓ supported")
    assert "E − D (Norm): +10 [9, 11]" in texts[("claim-c-pairs", "interval(s)")]
    assert texts[("claim-c-pairs", "power")] == "needs ≥ 3 seeds per arm (has 3)"
    assert texts[("claim-c-smoke", "verdict")].startswith("– no verdict")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.cmp tr'))"
        ".map(r => r.getBoundingClientRect().right)"
    )
    assert len(rows) >= 4 and max(rows) <= client_w + 1, rows  # the comparison rows unfolded, on screen
    # every link target exists
    ids = set(browser.execute_script("return Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    links = browser.execute_script(_LINKS)
    assert len(links) > 20
    for raw, resolved in links:
        if raw.startswith("#"):
            assert raw[1:] in ids, raw
            continue
        url = urlparse(resolved)
        assert url.scheme == "file", raw  # nothing on the network
        assert Path(unquote(url.path)).is_file(), raw
    keep = os.environ.get("BIOREG_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(int(height) + 100, 16000))
        browser.save_screenshot(str(Path(keep) / f"report_{width}.png"))
