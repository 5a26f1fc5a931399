"""A real server and a real browser for the web page's tests (and scripts/web_screenshots.py): ``affect-llm
serve`` in a subprocess on a free port, and headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'affect-llm[dev]')"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "no chromium / chromedriver (apt-get install chromium chromium-driver; scripts/install.sh does)"
    return None



class Server(str):
    """The base URL of a served instance (a str), with its process (``.proc``)."""

    proc: subprocess.Popen


@contextmanager
def served(*args: str, timeout: float = 120.0) -> Iterator[Server]:
    """``affect-llm serve ARGS`` on a free port until the block ends; yields its base URL (with ``.proc``)."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "affect_llm.cli", "serve", "--port", str(port), *args],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url = Server(f"http://127.0.0.1:{port}")
    url.proc = proc
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"affect-llm serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"affect-llm serve did not answer on {url} within {timeout:g} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chromium(width: int = 1400, height: int = 1000, downloads: Path | None = None):
    """Headless Chromium with its console log kept (``console_errors``); files the page saves go to
    ``downloads``."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})  # fmt: skip
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
              f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def console_errors(driver) -> list[str]:
    """The console's errors since the last call (the log is read once)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def analysed(driver, timeout: float = 600.0) -> str:
    """Wait until the page shows a result or an error; "result" or "error"."""
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d):
        if d.find_element("id", "result").is_displayed():
            return "result"
        msg = d.find_element("id", "message")
        if msg.is_displayed() and "error" in (msg.get_attribute("class") or ""):
            return "error"
        return False

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(settled)
