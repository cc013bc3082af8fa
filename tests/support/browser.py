"""Debian's chromium, headless, driven by selenium through Debian's chromedriver (no download).

``headless_chromium()`` yields a WebDriver; ``log_in`` gives it Airflow's session the way
the UI's login does (the ``_token`` cookie, httpOnly, path ``/``); ``plugin_frame`` opens
a UI page and enters the iframe of a plugin's external view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def log_in(driver, airflow_url: str, token: str) -> None:
    """Airflow's session cookie for ``token`` (a cookie can only be set on a page of its site)."""
    driver.get(f"{airflow_url}/api/v2/monitor/health")
    driver.add_cookie({"name": "_token", "value": token, "path": "/", "httpOnly": True, "sameSite": "Lax"})


def plugin_frame(driver, url: str, view_name: str, timeout: float = 60):
    """Open ``url`` (an Airflow UI page) and switch into the iframe of the external view ``view_name``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    driver.get(url)
    frame = WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"iframe[title='{view_name}']")))
    driver.switch_to.frame(frame)
    return frame


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text
