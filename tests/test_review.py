"The review page on a real (tiny) run: driven in a headless Chromium, and fed bad requests that must change nothing."
import http.client, inspect, json, shutil, threading, time
from pathlib import Path
import pandas as pd
import pytest
import soundfile as sf

from dcase_selfverify.core import get_preset
from dcase_selfverify.pipeline import run_pipeline                 # the one place that names the pipeline's module
from dcase_selfverify.corrections import DECISIONS_FILE, read_corrections
from dcase_selfverify.demo_data import make_demo_dataset
from dcase_selfverify.review import ReviewServer, load_review, serve_review
from dcase_selfverify.selfverify import label_audit

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A finished tiny run: 3 classes, 12 training clips each, 2 epochs, one self-verification round (about 40 s on 2 CPU cores)."
    root = tmp_path_factory.mktemp('review')
    data = make_demo_dataset(root/'data', n_classes=3, clips_per_class=12, test_clips_per_class=3, max_duration=4.0)
    preset = get_preset('tiny', epochs=2, finetune_epochs=1, sv_iterations=1)
    run_pipeline(data, root/'work', presets=[preset], device='cpu', progress=False, export=False, log=lambda message: None)
    return root/'work'

@pytest.fixture
def fresh_work(work, tmp_path):
    "A copy of the run whose review folder each test may write."
    copy = tmp_path/'work'
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns('*.pth', 'review'))
    return copy

def audited_clips(work:Path)->set:
    "The clips `selfverify.label_audit` lists for the run's decisions files."
    return set(pd.concat([label_audit(pd.read_csv(p)) for p in work.glob('*/selfverify/decisions_*.csv')])['clip'])

def wait_for(condition, timeout:float=20, what:str='condition'):
    "Poll `condition` until it returns something true."
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value: return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")

@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
def test_page_in_headless_chromium(fresh_work, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run', '--autoplay-policy=no-user-gesture-required',
                 '--window-size=1300,900', f'--user-data-dir={tmp_path/"chromium-profile"}'):
        options.add_argument(flag)
    with ReviewServer(fresh_work, port=0, sample=3) as server:
        review = server.review
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            driver.set_script_timeout(30)
            driver.get(server.url)
            wait_for(lambda: driver.find_element(By.TAG_NAME, 'body').get_attribute('data-ready'), what='the page to load')
            rows = driver.find_elements(By.CSS_SELECTOR, '#rows tbody tr')
            shown = {row.get_attribute('data-clip'): row.get_attribute('data-kind') for row in rows}
            assert {clip for clip, kind in shown.items() if kind == 'flagged'} == audited_clips(fresh_work)
            assert set(shown) == set(review.rows['clip']) and list(shown.values()).count('sample') == 3

            # an audio element loads its clip and plays it; its duration is the file's
            clip = review.rows['clip'].iloc[0]
            duration = driver.execute_async_script("""
                const [clip, done] = arguments;
                const audio = [...document.querySelectorAll('#rows tbody tr')].find(tr => tr.dataset.clip === clip).querySelector('audio');
                audio.muted = true; audio.preload = 'metadata';
                audio.addEventListener('error', () => done(-1), {once: true});
                audio.addEventListener('loadedmetadata', () => audio.play().then(() => done(audio.duration), e => done(-2)), {once: true});
                audio.load();""", clip)
            assert duration == pytest.approx(sf.info(str(review.audio[clip])).duration, abs=0.02)
            wait_for(lambda: driver.execute_script(
                "return [...document.querySelectorAll('audio')].some(a => a.currentTime > 0)"), what='the audio to play')
            width = driver.execute_async_script("""
                const done = arguments[0], image = document.querySelector('img.spec');
                image.loading = 'eager'; image.decode().then(() => done(image.naturalWidth), () => done(-1));""")
            assert width > 0                                            # the spectrogram image loaded

            # filtering by class shows that class's rows only
            given = review.rows.given_label.iloc[0]
            Select(driver.find_element(By.ID, 'filter-class')).select_by_value(given)
            visible = [row.get_attribute('data-clip') for row in driver.find_elements(By.CSS_SELECTOR, '#rows tbody tr') if row.is_displayed()]
            assert set(visible) == set(review.rows['clip'][review.rows.given_label == given])
            Select(driver.find_element(By.ID, 'filter-class')).select_by_value('')

            # a click on "relabel" writes the decisions file; the keyboard drops the next row
            row = driver.find_element(By.CSS_SELECTOR, f'#rows tbody tr[data-clip="{clip}"]')
            row.find_element(By.CSS_SELECTOR, 'button[data-action="relabel-suggested"]').click()
            decisions_path = fresh_work/DECISIONS_FILE
            wait_for(lambda: decisions_path.exists() and clip in decisions_path.read_text(), what='the decision to be written')
            suggested = review.rows.loc[clip].suggested_label
            selected = lambda: driver.execute_script("return document.querySelector('tr.selected').dataset.clip")
            assert selected() == clip                                   # a click selects the row
            driver.find_element(By.TAG_NAME, 'body').send_keys('n')     # next row, then drop it by key
            next_clip = selected()
            assert next_clip != clip
            driver.find_element(By.TAG_NAME, 'body').send_keys('d')
            wait_for(lambda: next_clip in decisions_path.read_text(), what='the keyboard decision')
            written = read_corrections(decisions_path, review.classes).set_index('clip')
            assert (written.loc[clip].decision, written.loc[clip].new_label) == ('relabel', suggested)
            assert written.loc[next_clip].decision == 'drop'

            # a reload shows both decisions, and the summary counts them
            driver.refresh()
            wait_for(lambda: driver.find_element(By.TAG_NAME, 'body').get_attribute('data-ready'), what='the reload')
            row = driver.find_element(By.CSS_SELECTOR, f'#rows tbody tr[data-clip="{clip}"]')
            assert row.get_attribute('data-decision') == 'relabel'
            assert row.find_element(By.CSS_SELECTOR, '.decision').text == f'relabel \u2192 {suggested}'
            assert driver.find_element(By.CSS_SELECTOR, f'#rows tbody tr[data-clip="{next_clip}"]').get_attribute('data-decision') == 'drop'
            summary = {card.get_attribute('data-class'): {span.get_attribute('data-field'): int(span.text)
                                                          for span in card.find_elements(By.CSS_SELECTOR, 'span[data-field]')}
                       for card in driver.find_elements(By.CSS_SELECTOR, '#summary [data-class]')}
            assert set(summary) == set(review.rows.given_label)
            assert [sum(counts[field] for counts in summary.values()) for field in ('flagged', 'decided', 'relabelled', 'dropped')] == \
                   [int(review.rows.kind.eq('flagged').sum()), 2, 1, 1]
            screenshot = tmp_path/'review.png'
            assert driver.save_screenshot(str(screenshot)) and screenshot.read_bytes()[:4] == b'\x89PNG'
        finally: driver.quit()

def send(server:ReviewServer, method:str, path:str, body:bytes|None=None, headers:dict|None=None)->tuple[int, bytes]:
    "One raw HTTP request (the path is sent exactly as given)."
    connection = http.client.HTTPConnection(*server.httpd.server_address[:2], timeout=30)
    connection.putrequest(method, path, skip_host='Host' in (headers or {}), skip_accept_encoding=True)
    for name, value in (headers or {}).items(): connection.putheader(name, value)
    if body is not None: connection.putheader('Content-Length', str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = (response.status, response.read())
    connection.close()
    return answer

BAD_PATHS = ['/../run.json', '/audio/../run.json', '/audio/%2e%2e/run.json', '/audio/..%2f..%2frun.json', '/audio/%2E%2E%2Frun.json',
             '/spectrogram/%2e%2e%2fmetrics.json.png', '/static/../run.json', '/static/other.js', '//etc/passwd', '/etc/passwd',
             '/audio//etc/passwd', '/audio/%2Fetc%2Fpasswd', '/spectrogram//etc/passwd.png', '/audio/nope.wav', '/spectrogram/nope.wav.png',
             '/run.json', '/review/decisions.csv', '/features/train/v1/summary.csv', '/audio/', '/api/decision/..']

def test_bad_requests_change_nothing(fresh_work):
    with ReviewServer(fresh_work, port=0) as server:
        review = server.review
        clip = review.rows['clip'].iloc[0]
        json_headers = {'Content-Type': 'application/json'}
        good = json.dumps({'clip': clip, 'decision': 'keep'}).encode()
        assert send(server, 'POST', '/api/decision', good, json_headers)[0] == 200
        decisions_path = fresh_work/DECISIONS_FILE
        before = decisions_path.read_bytes()
        for path in BAD_PATHS + [f'/audio/{clip}/x', f'/audio/{clip}/..', f'/spectrogram/{clip}']:
            assert send(server, 'GET', path)[0] == 404, path
        bad_decisions = [b'{clip', b'[1, 2]', b'"keep"', json.dumps({'clip': 'nope.wav', 'decision': 'keep'}).encode(),
                         json.dumps({'clip': clip, 'decision': 'maybe'}).encode(), json.dumps({'clip': clip, 'decision': 'relabel'}).encode(),
                         json.dumps({'clip': clip, 'decision': 'relabel', 'new_label': 'Banjo'}).encode(), b'\xff\xfe']
        for body in bad_decisions:
            status, answer = send(server, 'POST', '/api/decision', body, json_headers)
            assert status == 400 and json.loads(answer)['error'], body
        assert 'unknown class' in json.loads(send(server, 'POST', '/api/decision', bad_decisions[-2], json_headers)[1])['error']
        assert 'unknown clip' in json.loads(send(server, 'POST', '/api/decision', bad_decisions[3], json_headers)[1])['error']
        assert send(server, 'POST', '/api/decision', good, {'Content-Type': 'text/plain'})[0] == 415      # what a foreign form sends
        assert send(server, 'POST', '/api/decision', b'', json_headers)[0] == 400
        assert send(server, 'POST', '/audio/' + clip, good, json_headers)[0] == 404
        assert send(server, 'GET', '/', headers={'Host': 'attacker.example:8765'})[0] == 403             # DNS rebinding
        assert decisions_path.read_bytes() == before
        # what is served: the page, its assets, and the clips of the review
        assert send(server, 'GET', '/')[0] == 200 and send(server, 'GET', '/static/review.js')[0] == 200
        status, audio = send(server, 'GET', f'/audio/{clip}', headers={'Range': 'bytes=0-3'})
        assert (status, audio) == (206, b'RIFF')
        status, png = send(server, 'GET', f'/spectrogram/{clip}.png')
        assert status == 200 and png[:4] == b'\x89PNG'
        assert [p.parent.name for p in (fresh_work/'review').rglob('*.png')] == ['spectrograms']

def test_binds_loopback_by_default(fresh_work):
    assert inspect.signature(serve_review).parameters['host'].default == '127.0.0.1'
    assert inspect.signature(ReviewServer).parameters['host'].default == '127.0.0.1'
    server = ReviewServer(fresh_work, port=0)
    try: assert server.httpd.server_address[0] == '127.0.0.1' and server.url.startswith('http://127.0.0.1:')
    finally: server.stop()

def test_two_tabs_lose_no_decision(fresh_work):
    "Two clients posting at once, as two open tabs would: every decision arrives."
    with ReviewServer(fresh_work, port=0, include_accepted=True, sample=100) as server:
        clips = server.review.rows['clip'].tolist()
        def post_all(part):
            for clip in part:
                body = json.dumps({'clip': clip, 'decision': 'skip'}).encode()
                assert send(server, 'POST', '/api/decision', body, {'Content-Type': 'application/json'})[0] == 200
        tabs = [threading.Thread(target=post_all, args=(clips[i::2],)) for i in range(2)]
        for tab in tabs: tab.start()
        for tab in tabs: tab.join()
        assert sorted(read_corrections(fresh_work/DECISIONS_FILE, server.review.classes)['clip']) == sorted(clips)
        state = json.loads(send(server, 'GET', '/api/state')[1])
        assert set(state['decisions']) == set(clips)

def test_review_without_results_fails_clearly(tmp_path):
    from dcase_selfverify.core import DatasetError
    with pytest.raises(DatasetError, match='No self-verification results'): load_review(tmp_path)
    with pytest.raises(DatasetError, match='Work folder not found'): load_review(tmp_path/'nowhere')
