"""`t2v rate` in a real subprocess, driven with the keyboard in headless Chromium (Debian's, via chromedriver):
answers land in the ratings table, sides are random but recorded, kill -9 loses nothing, the token is enforced,
and no rater gets a pair twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipelines.rate.summary import summarise, winner
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.location import StorageLocation
from tests.conftest import make_video

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium is not installed (apt-get install chromium chromium-driver)",
)

PROMPTS = ["a red ball bounces", "a dog runs on grass", "waves at night", "a busy city street"]
TOKEN = "open-sesame-42"
SEED = 5  # fixed draws, so that both sides come up among four pairs on every run of the test


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path, int]:
    """Generations of runs alpha and beta (tiny real mp4s); alpha also has a prompt beta lacks."""
    base = tmp_path_factory.mktemp("rate")
    location = StorageLocation(str(base / "root"))
    blobs, rows = BlobStore(location), []
    for number, run in enumerate(("alpha", "beta")):
        for index, prompt in enumerate(PROMPTS + (["only alpha has this"] if run == "alpha" else [])):
            clip = make_video(base / f"{run}-{index}.mp4", num_frames=6, fps=6.0, size=(32, 32), seed=10 * number + index)
            rows.append({
                "id": f"{run}-{index}", "run": run, "checkpoint": f"runs/{run}/cascade", "prompt": prompt, "seed": index,
                "long_video": False, "num_frames": 6, "width": 32, "height": 32, "fps": 6.0,
                "blob": blobs.put_file(clip).key, "config": "{}", "generate_run_id": "test", "created_at": float(index),
            })
    Catalog(location).write("generations", rows, run_id="test")
    port = _free_port()
    config = base / "t2v.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(base / "root")},
                                      "rate": {"port": port, "token": TOKEN, "seed": SEED}}))
    return config, base / "root", port


class Server:
    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log, self.process = config, port, log, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "rate", "--runs", "alpha", "beta", "--config", str(self.config)],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(self.log.read_text()[-3000:])

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def request(self, path: str, body: dict | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", **({"x-t2v-token": token} if token else {})}
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def server(study, tmp_path_factory):
    config, _, port = study
    running = Server(config, port, tmp_path_factory.mktemp("log") / "rate.log")
    running.start()
    yield running
    if running.process.poll() is None:
        running.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def _progress(driver) -> str:
    from selenium.webdriver.common.by import By

    def shown(d):
        element = d.find_element(By.ID, "done") if d.find_element(By.ID, "rate").get_attribute("hidden") else \
            d.find_element(By.ID, "progress")
        return element.text if re.search(r"\d", element.text) else False

    return _wait(driver, shown)


def _log_in(driver, port: int, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"http://127.0.0.1:{port}/?token={TOKEN}")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    _wait(driver, lambda d: d.find_element(By.ID, "rater").is_displayed())
    driver.find_element(By.ID, "rater").send_keys(name, Keys.ENTER)


def _rate(driver, keys: str) -> dict:
    """Answer the pair on screen with the keyboard; what the page showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = _progress(driver)
    shown = {"prompt": driver.find_element(By.ID, "prompt").text,
             "left": driver.find_element(By.ID, "left").get_attribute("src").rsplit("/", 1)[1],
             "right": driver.find_element(By.ID, "right").get_attribute("src").rsplit("/", 1)[1]}
    driver.find_element(By.TAG_NAME, "body").send_keys(*keys, Keys.ENTER)
    _wait(driver, lambda d: _progress(d) != before)
    return shown


def test_the_token_is_enforced(server, browser):
    from selenium.webdriver.common.by import By

    assert server.request("/api/next?rater=eve", token=None)[0] == 401
    assert server.request("/api/next?rater=eve", token="wrong-token")[0] == 401
    assert server.request("/video/alpha-0", token=None)[0] == 401
    browser.get(f"http://127.0.0.1:{server.port}/")
    assert browser.find_element(By.ID, "token-needed").is_displayed()
    browser.get(f"http://127.0.0.1:{server.port}/?token=not-the-token")
    assert browser.find_elements(By.ID, "token-needed") and not browser.find_elements(By.ID, "rater")
    browser.get(f"http://127.0.0.1:{server.port}/?token={TOKEN}")
    assert browser.current_url.endswith(":%d/" % server.port)  # the token moved into a cookie
    assert browser.find_element(By.ID, "rater").is_displayed()


def test_answers_land_in_the_table_and_survive_kill_9(study, server, browser):
    _, root, port = study
    catalog = Catalog(StorageLocation(str(root)))
    generation_run = {row["id"]: row["run"] for row in catalog.read("generations").to_pylist()}

    _log_in(browser, port, "ann")
    assert _progress(browser) == "0 / 4 rated"  # the prompt only alpha has is not a pair
    shown = [_rate(browser, "al"), _rate(browser, "sk")]
    assert _progress(browser) == "2 / 4 rated"
    rows = {row["prompt"]: row for row in catalog.read("ratings").to_pylist()}
    assert set(rows) == {s["prompt"] for s in shown}
    for seen, (quality, text) in zip(shown, (("left", "right"), ("same", "same"))):
        row = rows[seen["prompt"]]
        assert (row["rater"], row["quality"], row["text"]) == ("ann", quality, text)
        assert row["left_run"] == generation_run[seen["left"]]  # the side the page showed is the side recorded
        assert {generation_run[seen["left"]], generation_run[seen["right"]]} == {"alpha", "beta"}

    server.kill()  # no goodbye: answers must already be in the catalog
    server.start()
    browser.refresh()  # same session: the page knows the rater, the server knows where they were
    assert _progress(browser) == "2 / 4 rated"
    shown += [_rate(browser, "dj"), _rate(browser, "al")]
    assert _progress(browser) == "All 4 pairs rated: thank you."

    ann = [row for row in catalog.read("ratings").to_pylist() if row["rater"] == "ann"]
    assert len(ann) == 4 and len({row["pair_id"] for row in ann}) == 4  # four pairs, none twice
    assert sorted(s["prompt"] for s in shown) == sorted(PROMPTS)
    assert {row["left_run"] for row in ann} == {"alpha", "beta"}  # sides are drawn, not fixed
    last = next(row for row in ann if row["prompt"] == shown[2]["prompt"])
    assert (last["quality"], last["text"]) == ("right", "left") and last["shown_at"] <= last["answered_at"]

    again = {"rater": "ann", "pair_id": ann[0]["pair_id"], "left_run": "alpha", "quality": "left", "text": "left"}
    status, body = server.request("/api/answer", again)
    assert status == 409 and "already rated" in body["detail"]
    assert server.request("/api/next?rater=ann")[1] == {"answered": 4, "total": 4, "pair": None}

    # a second rater in a fresh session rates two of the same pairs: agreement becomes measurable
    _log_in(browser, port, "bob")
    assert _progress(browser) == "0 / 4 rated"
    bob = [_rate(browser, "al"), _rate(browser, "al")]
    ratings = catalog.read("ratings").to_pylist()
    assert len(ratings) == 6 and {r["rater"] for r in ratings} == {"ann", "bob"}
    summary = summarise(ratings, "alpha", "beta")
    assert summary["pairs"] == 4 and summary["questions"]["quality"]["agreement"]["comparisons"] == 2
    bob_rows = [r for r in ratings if r["rater"] == "bob"]
    assert {r["prompt"] for r in bob_rows} == {b["prompt"] for b in bob}
    assert all(winner(r, "quality") == generation_run[b["left"]]
               for r, b in zip(sorted(bob_rows, key=lambda r: r["prompt"]), sorted(bob, key=lambda b: b["prompt"])))
