"""Open a page in the system's headless Chromium (Debian's `chromium` and `chromium-driver`;
nothing is downloaded): console errors, broken images, a screenshot.

    python -m tests.browser PAGE.html OUT.png   # e.g. the screenshot in docs/figures/report.png
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: Where Debian puts the browser and its driver.
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
#: The screenshot's width and its most height, in pixels.
WIDTH, MAX_HEIGHT = 1280, 2600


def available() -> bool:
    """Whether a headless browser can be driven here."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM is not None and CHROMEDRIVER is not None


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={WIDTH},1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _load(driver, page: Path) -> None:
    """Open `page` and wait until every image has loaded (or failed)."""
    driver.get(page.resolve().as_uri())
    driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager');")
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(Array.from(document.images).map(i => i.complete ? 0 :"
        " new Promise(r => { i.onload = r; i.onerror = r; }))).then(() => done());"
    )


def image_widths(page: Path) -> dict[str, tuple[float, int]]:
    """Each image of `page` as the browser lays it out: src -> (shown width in CSS pixels,
    the PNG's own width)."""
    driver = _driver()
    try:
        _load(driver, page)
        found = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'),"
            " i.getBoundingClientRect().width, i.naturalWidth]);"
        )
    finally:
        driver.quit()
    return {src: (shown, natural) for src, shown, natural in found}


def open_page(page: Path, screenshot: Path) -> tuple[list[str], list[str]]:
    """Load `page`, save a screenshot; (console errors, sources of images that did not load)."""
    driver = _driver()
    try:
        _load(driver, page)
        broken = driver.execute_script(
            "return Array.from(document.images)"
            ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));"
        )
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(WIDTH, min(int(height), MAX_HEIGHT))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    return errors, broken


if __name__ == "__main__":
    errors, broken = open_page(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"console errors: {errors or 'none'}; broken images: {broken or 'none'}")
    sys.exit(1 if errors or broken else 0)
