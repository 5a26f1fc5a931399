"""The web page in a real browser: headless Chromium driven by Selenium against ``affect-llm serve`` (real models,
real media). A clip and an audio file are uploaded through the page's file input; the page's label, cue ids and
timeline are checked against the server's own Analysis of the same job; clicking a cue (and a cited id) seeks the
player; a follow-up question is answered; a broken file and a missing key read as messages; the console stays
free of errors."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests._synth import shared_media
from tests.web.browser import analysed, chromium, console_errors, served, unavailable

pytestmark = pytest.mark.slow

KEY = "browser-test-key"
why = unavailable()
if why:
    pytest.skip(why, allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    with served("--api-key", KEY, "--max-body-mb", "32") as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(server, downloads):
    d = chromium(downloads=downloads)
    try:
        d.get(server + "/")
        _enter_key(d)
        yield d
    finally:
        d.quit()


def _enter_key(d):
    """The page asks for the server's key once (it keeps it for the tab's session)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 20).until(lambda x: x.find_element("id", "key-panel").is_displayed())
    d.find_element("id", "api-key").send_keys(KEY)
    d.find_element("css selector", "#key-form button").click()
    assert not d.find_element("id", "key-panel").is_displayed()


def _job(d, server) -> dict:
    """The server's view of the job the page shows (its whole Analysis)."""
    job_id = d.execute_script("return state.job")
    r = httpx.get(f"{server}/v1/analyses/{job_id}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200
    return r.json()


def _upload(d, path) -> str:
    d.find_element("id", "file").send_keys(str(path))
    return analysed(d)


def _shown_matches(d, a: dict) -> None:
    assert d.find_element("id", "label").text == a["label"]
    shown = [li.get_attribute("data-id") for li in d.find_elements("css selector", "#cues li")]
    assert shown == [c["id"] for c in a["cues"]]
    stages = d.find_elements("css selector", "#stages li.done")
    assert len(stages) >= 3  # sending, then at least two of the pipeline's stages, each with its time
    assert all(li.find_element("class name", "stage-status").text.startswith("✓") for li in stages)


def _wait_for_metadata(d) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 30).until(lambda x: x.execute_script("return document.getElementById('player').readyState") >= 1)


def test_a_clip_on_the_timeline_seeks_the_player_and_answers_a_question(driver, server, downloads):
    d = driver
    assert _upload(d, shared_media() / "hamilton.mp4") == "result", d.find_element("id", "message").text
    a = _job(d, server)["analysis"]
    _shown_matches(d, a)
    assert d.find_element("id", "player").tag_name == "video"
    timed = [c for c in a["cues"] if c["start"] is not None and c["modality"] in ("speech", "prosody", "face", "scene")]
    spans = d.find_elements("css selector", "#timeline-svg rect.cue-span")
    assert sorted(s.get_attribute("data-id") for s in spans) == sorted(c["id"] for c in timed)
    words = [w for s in a["transcript"]["segments"] for w in s["words"]]
    assert len(d.find_elements("css selector", "#timeline-svg rect.word")) == len(words) > 5
    # the AU curves and the voice contour are drawn (paths with points), one AU curve per shown AU
    au_paths = d.find_elements("css selector", "#timeline-svg path.au")
    assert 1 <= len(au_paths) <= 6 and all(len(p.get_attribute("d")) > 50 for p in au_paths)
    assert len(d.find_element("css selector", "#timeline-svg path.pitch").get_attribute("d")) > 50
    # the fused label's bars and each modality's, with the fusion weights
    names = [m.get_attribute("data-modality") for m in d.find_elements("css selector", "#modalities .modality")]
    assert names[0] == "fused" and set(names[1:]) == set(a["distributions"])
    assert d.find_element("id", "decision").text == a["decision"]

    _wait_for_metadata(d)
    cue = max(timed, key=lambda c: c["start"])  # the latest cue: far from where the player stands
    assert cue["start"] > 1.0
    d.find_element("css selector", f'#timeline-svg rect.cue-span[data-id="{cue["id"]}"]').click()
    t = d.execute_script("return document.getElementById('player').currentTime")
    assert abs(t - cue["start"]) < 0.05
    head = float(d.find_element("id", "playhead").get_attribute("x1"))
    assert head > 96  # moved off the start of the axis
    cites = d.find_elements("css selector", "#explanation a.cite")
    assert [c.get_attribute("data-id") for c in cites] == [x for x in _cited_in_order(a) if x in {c["id"] for c in a["cues"]}]
    timed_cites = [c for c in cites if next(q for q in a["cues"] if q["id"] == c.get_attribute("data-id"))["start"] is not None]
    if timed_cites:
        first = timed_cites[0]
        start = next(q for q in a["cues"] if q["id"] == first.get_attribute("data-id"))["start"]
        first.click()
        assert abs(d.execute_script("return document.getElementById('player').currentTime") - start) < 0.05

    d.find_element("id", "question").send_keys("Why do you think so?")
    d.find_element("id", "ask").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 300).until(lambda x: x.find_elements("css selector", "#chat-log p.a:not(.pending)"))
    answer = d.find_element("css selector", "#chat-log p.a").text
    assert not answer.startswith("No answer") and len(answer.split()) >= 5, answer
    if os.environ.get("AFFECT_LLM_SCREENSHOT"):
        d.set_window_size(1400, d.execute_script("return document.body.scrollHeight") + 40)
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(os.environ["AFFECT_LLM_SCREENSHOT"])
        d.set_window_size(1400, 1000)

    d.find_element("id", "download-json").click()
    d.find_element("id", "download-plot").click()
    saved_json, saved_png = downloads / "hamilton.analysis.json", downloads / "hamilton-timeline.png"
    WebDriverWait(d, 60).until(lambda _: saved_json.is_file() and saved_png.is_file())
    assert json.loads(saved_json.read_text()) == a  # the whole Analysis the server holds
    assert saved_png.read_bytes()[:4] == b"\x89PNG"
    assert console_errors(d) == []


def _cited_in_order(a: dict) -> list[str]:
    import re

    return re.findall(r"\[([A-Z][0-9]{1,3})\]", a["explanation"])


def test_an_audio_file_plays_in_an_audio_player_with_its_voice_contour(driver, server):
    d = driver
    assert _upload(d, shared_media() / "jfk.flac") == "result", d.find_element("id", "message").text
    a = _job(d, server)["analysis"]
    _shown_matches(d, a)
    assert d.find_element("id", "player").tag_name == "audio"
    assert "face" in a["missing_modalities"] and "Missing: " in d.find_element("id", "missing").text
    assert not d.find_elements("css selector", "#timeline-svg path.au")
    pitch = d.find_element("css selector", "#timeline-svg path.pitch").get_attribute("d")
    assert pitch.count("L") > 50  # the contour has points
    _wait_for_metadata(d)
    s_cues = [c for c in a["cues"] if c["modality"] == "speech"]
    assert s_cues
    d.find_element("css selector", f'#cues li[data-id="{s_cues[-1]["id"]}"] button').click()
    assert abs(d.execute_script("return document.getElementById('player').currentTime") - s_cues[-1]["start"]) < 0.05
    assert console_errors(d) == []


def test_a_broken_file_reads_as_a_message(driver, tmp_path):
    d = driver
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(os.urandom(4096))
    assert _upload(d, bad) == "error"
    msg = d.find_element("id", "message").text
    assert msg.startswith("holiday.mp4:"), msg
    assert not d.find_element("id", "result").is_displayed()
    assert d.find_element("id", "progress-title").text == "The analysis stopped"
    assert d.find_element("id", "file").is_enabled()  # the page is not stuck: another file can be chosen


def test_a_text_with_its_dialogue_and_an_oversize_file(server):
    """A fresh tab asks for the key again; a text with its dialogue is analysed (the dialogue model reads it);
    a file over the server's limit is refused before it is sent."""
    d = chromium()
    try:
        d.get(server + "/")
        _enter_key(d)
        d.find_element("id", "text").send_keys("I can't believe you forgot my birthday again.")
        d.find_element("css selector", "#text-form details summary").click()
        d.find_element("id", "context").send_keys("Ann: Happy Monday!\nBen: Is it? Oh no.")
        d.find_element("id", "analyse-text").click()
        assert analysed(d) == "result", d.find_element("id", "message").text
        view = _job(d, server)
        assert d.find_element("id", "label").text == view["analysis"]["label"]
        assert any(c["modality"] == "context" for c in view["analysis"]["cues"])  # the dialogue was read
        assert not d.find_element("id", "timeline").is_displayed()  # text: no player, no timeline
        d.execute_script("analyseFile(new File([new Uint8Array(33 * 1024 * 1024)], 'huge.mp4'))")
        msg = d.find_element("id", "message").text
        assert "huge.mp4 is 33.0 MB" in msg and "32 MB" in msg, msg
        assert console_errors(d) == []
    finally:
        d.quit()


def test_a_server_that_goes_away_mid_analysis_reads_as_a_message():
    """The server is killed while the page follows an analysis: the page says it is retrying, then that the
    connection is lost; the page is not stuck (its inputs work again)."""
    from selenium.webdriver.support.ui import WebDriverWait

    with served() as gone:
        d = chromium()
        try:
            d.get(gone + "/")
            assert not d.find_element("id", "key-panel").is_displayed()  # no --api-key: no key asked
            d.find_element("id", "text").send_keys("We won the final!")
            d.find_element("id", "analyse-text").click()
            WebDriverWait(d, 30).until(lambda x: x.find_elements("css selector", '#stages li[data-stage="upload"].done'))
            gone.proc.kill()  # the models are still loading: the analysis is under way
            gone.proc.wait()
            WebDriverWait(d, 30).until(lambda x: "retrying" in x.find_element("id", "message").text)
            assert analysed(d, timeout=60) == "error"
            assert "Lost the connection to the server" in d.find_element("id", "message").text
            assert d.find_element("id", "analyse-text").is_enabled()
        finally:
            d.quit()
