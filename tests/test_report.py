"""`catdog report` opened in a real browser (Debian's Chromium, driven headless by Playwright) and
`catdog search`: the demo folder with planted problems (a misfiled image, a copy across splits), and a
generated OUT of 100,000 rows. No console error, every image of a first page loads, filters and paging
change what is listed, and each planted problem is on its page."""

import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import catdog
from catdog import synthetic
from catdog.store import features
from tests import generators

pytestmark = pytest.mark.slow  # builds a model, starts a browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's folder with its planted problems, extracted in this process, a head fitted, reported."""
    tmp = tmp_path_factory.mktemp("report")
    root = synthetic.make_demo_folder(str(tmp / "images"), per_class=20, size=64)
    planted = synthetic.plant_problems(root)
    out = str(tmp / "features")
    catdog.extract(root, out, weights="none", image_size=64, executor="local", progress=False)
    catdog.fit_head(out, str(tmp / "model"))
    result = catdog.report(out, model=str(tmp / "model"))
    return tmp, out, planted, result


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


class Page:
    """A browser tab on a report, collecting every console error and uncaught exception."""

    def __init__(self, browser, index: str):
        self.tab = browser.new_page()
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.index = "file://" + os.path.abspath(index)

    def open(self, page: str = "overview"):
        self.tab.goto(f"{self.index}#{page}")
        self.tab.wait_for_selector(f'#main[data-page="{page}"]')  # this page drawn, not the one before it
        return self

    def column(self, name: str) -> list[str]:
        heads = [h.strip(" ▲▼") for h in self.tab.locator("#rows thead th").all_inner_texts()]
        i = heads.index(name)
        return [row.locator("td").nth(i).inner_text() for row in self.tab.locator("#rows tbody tr").all()]

    def images_loaded(self) -> tuple[int, int]:
        """(images on the page, those that loaded), once every one has loaded or failed."""
        self.tab.wait_for_function("[...document.images].every(i => i.complete)")
        return self.tab.evaluate("[document.images.length, [...document.images].filter(i => i.naturalWidth > 0).length]")


def test_the_demo_report_shows_the_planted_problems_in_a_browser(demo, browser):
    tmp, out, planted, result = demo
    assert result.index == os.path.join(out, "report", "index.html") and os.path.isfile(result.index)
    page = Page(browser, result.index).open()
    assert "41 images" in page.tab.inner_text("#totals")
    _screenshot(page, "overview")
    page.open("label_issues")
    misfiled = [path for path, _ in planted.misfiled]
    assert set(misfiled) <= set(page.column("path"))
    shown, loaded = page.images_loaded()
    assert shown >= 2 and loaded == shown  # each issue's thumbnail and its neighbours' strip
    _screenshot(page, "label-issues")
    page.open("duplicates")
    original, copy = planted.duplicate
    rows = list(zip(page.column("path_a"), page.column("path_b"), page.column("across_splits")))
    assert (original, copy, "leak") in rows or (copy, original, "leak") in rows
    page.open("outliers")
    assert page.tab.locator("#rows tbody tr").count() == len(list(csv.DictReader(open(os.path.join(out, "audit", "outliers.csv")))))
    page.open("model")
    assert page.tab.locator("#metrics tr").count() == 1 + 3  # header + train, validation, test
    page.open("map")
    assert page.tab.inner_text("#pager") == "41 points"
    page.open("unreadable")
    assert page.tab.locator("#empty").count() == 1
    assert page.errors == []


def test_filters_sorting_and_paging_over_100000_rows(tmp_path, browser):
    """A generated OUT of 100,000 rows (no images behind it: the pages say so): lists are paged at
    100 rows, a filter lists only what matches, and a sort orders the column."""
    out = generators.features_out(tmp_path, 100_000)
    result = catdog.report(out.path, executor="local")  # no images behind the rows: nothing for Ray to do
    assert any("no thumbnails" in n for n in result.notes)
    page = Page(browser, result.index).open("label_issues")
    issues = list(csv.DictReader(open(os.path.join(out.path, "audit", "label_issues.csv"))))
    assert len(issues) > 100
    assert page.tab.locator("#rows tbody tr").count() == 100 and page.tab.inner_text("#count") == str(len(issues))
    first = page.column("path")
    page.tab.click("#next")
    assert page.tab.inner_text("#pageno") == "2" and page.column("path") == [r["path"] for r in issues[100:200]] != first
    page.tab.select_option("select[data-filter='given']", "c3")
    wanted = [r for r in issues if r["given"] == "c3"]
    assert page.tab.inner_text("#count") == str(len(wanted)) and set(page.column("given")) == {"c3"}
    page.tab.click("th[data-sort='self_confidence']")
    shown = [float(x) for x in page.column("self_confidence")]
    assert shown == sorted(shown) and page.tab.inner_text("#pageno") == "1"
    assert page.images_loaded()[1] == 0 and page.tab.locator(".noimage").count() > 0
    assert page.errors == []


def test_search_finds_a_re_saved_copy_of_a_stored_photo_at_rank_1(demo, tmp_path):
    tmp, out, _, _ = demo
    stored = features.load(out)
    original = os.path.join(tmp, "images", stored.paths[5])
    Image.open(original).save(tmp_path / "copy.jpg", quality=75)  # re-saved: other bytes, nearly the same pixels
    found = catdog.search(out, [str(tmp_path / "copy.jpg")], top=3, out=str(tmp_path / "found.csv"))
    assert [(m.rank, m.path) for m in found.matches][0] == (1, stored.paths[5])
    assert found.matches[0].cosine > 0.98 and [m.rank for m in found.matches] == [1, 2, 3]
    rows = list(csv.DictReader(open(tmp_path / "found.csv")))
    assert [r["path"] for r in rows] == [m.path for m in found.matches] and list(rows[0]) == ["query", "rank", "path", "cosine"]


def _screenshot(page: Page, name: str) -> None:
    """With CATDOG_SCREENSHOTS=DIR, the page as the browser drew it (README's pictures are these)."""
    folder = os.environ.get("CATDOG_SCREENSHOTS")
    if folder:
        page.tab.set_viewport_size({"width": 1100, "height": 700})
        page.tab.screenshot(path=os.path.join(folder, f"report-{name}.png"))


def test_a_report_of_another_tool_s_embeddings_reads_its_paths_or_says_why(tmp_path):
    """clip-retrieval-like embeddings: absolute image paths, labels; thumbnails read from those paths.
    The same vectors naming paths that are not here: the pages say there are no images, and why."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    synthetic.make_demo_folder(str(tmp_path / "photos"), per_class=10, size=40)
    files = sorted(str(p) for p in (tmp_path / "photos").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    labels = ["dogs" if "/dogs/" in f else "cats" for f in files]
    X = (rng.normal(0, 1, (len(files), 8)) + np.array([[2.0 if y == "dogs" else 0.0] * 8 for y in labels])).astype(np.float32)
    for name, paths in (("here", files), ("elsewhere", [f"/nowhere/{i}.jpg" for i in range(len(files))])):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"image_path": paths, "label": labels, "embedding": list(X)}), path)
        result = catdog.report(str(path), features_column="embedding", path_column="image_path",
                               report_dir=str(tmp_path / name))
        assert os.path.isfile(os.path.join(tmp_path, name, "index.html")) and result.counts["map"] == len(files)
        if name == "here":
            assert result.thumbnails == len(files) and not result.notes  # every image shows on the map
        else:
            assert result.thumbnails == 0 and result.notes == ["no thumbnails: the embeddings' paths are not images "
                                                               "readable here"]



def test_thumbnails_made_in_ray_tasks_are_those_threads_make(tmp_path, ray_local):
    """The same thumbnails, byte for byte, from Ray tasks (the suite's Ray) as from threads here."""
    from catdog.html import thumbnails

    root = synthetic.make_demo_folder(str(tmp_path / "images"), per_class=6, size=40)
    recorded = {"root": root, "out": str(tmp_path / "out"), "image_size": 32}
    paths = sorted(str(p.relative_to(root)) for p in (tmp_path / "images").rglob("*.jpg"))
    here, _ = thumbnails.make(recorded, paths, str(tmp_path / "threads"))
    there, _ = thumbnails.make(recorded, paths, str(tmp_path / "ray"), on_ray=True)
    assert sorted(here) == sorted(there) == paths
    for path in paths:
        assert (tmp_path / "threads" / here[path]).read_bytes() == (tmp_path / "ray" / there[path]).read_bytes()
