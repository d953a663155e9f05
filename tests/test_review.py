"The review page on a real (tiny) run: driven in a headless Chromium, and fed malformed requests that must change nothing."
import http.client, inspect, json, math, shutil, socket, threading, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dcase_selfverify.core import UserError, get_preset, load_json
from dcase_selfverify.pipeline import run_pipeline                 # the one place that names the pipeline's module
from dcase_selfverify.corrections import read_corrections
from dcase_selfverify.demo_data import make_demo_dataset
from dcase_selfverify.review import (AuditSampleError, NoResultsError, ReviewError, UnknownRuleError,
                                     WorkFolderNotFoundError, load_review, metrics_entry, read_accepted_audit)
from dcase_selfverify.review_render import PIXELS_PER_SECOND
from dcase_selfverify.review_server import PortInUseError, ReviewServer, UnsafeBindError, serve_review
from dcase_selfverify.work_folder import WorkFolder
from dcase_selfverify.selfverify import label_audit

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
needs_browser = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                   reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A finished tiny run: 3 classes, 12 training clips each, 2 epochs, one self-verification round (about a minute on 2 CPU cores)."
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

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    "One headless Chromium for the module's tests."
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()): pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run', '--autoplay-policy=no-user-gesture-required',
                 '--window-size=1300,900', f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()

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

def open_page(driver, url:str):
    "Load the page and wait until its rows are drawn."
    driver.get('about:blank')
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === 'true'"), what='the page to load')

def press(driver, keys:str):
    "Type keys into whatever has the focus, as a curator does."
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(driver).send_keys(keys).perform()

def js(driver, script:str, *args): return driver.execute_script(script, *args)
selected = lambda driver: js(driver, "const tr = document.querySelector('#rows tbody tr.selected'); return tr ? tr.dataset.clip : null")
visible = lambda driver: js(driver, "return [...document.querySelectorAll('#rows tbody tr')].map(tr => tr.dataset.clip)")
banners = lambda driver: js(driver, "return [...document.querySelectorAll('#banner [data-key]')].map(d => d.dataset.key)")

@needs_browser
def test_page_in_headless_chromium(fresh_work, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    driver = browser
    with ReviewServer(fresh_work, port=0, sample=3) as server:
        review = server.review
        open_page(driver, server.url)
        rows = driver.find_elements(By.CSS_SELECTOR, '#rows tbody tr')
        shown = {row.get_attribute('data-clip'): row.get_attribute('data-kind') for row in rows}
        assert {clip for clip, kind in shown.items() if kind == 'flagged'} == audited_clips(fresh_work)
        assert set(shown) == set(review.rows['clip']) and list(shown.values()).count('sample') == 3
        assert js(driver, "return document.activeElement.id") == 'rows'          # the keys go to the table from the start

        # an audio element shows its duration before it plays (preload=metadata), plays, and moves the playhead
        clip = review.rows['clip'].iloc[0]
        duration = driver.execute_async_script("""
            const [clip, done] = arguments;
            const audio = [...document.querySelectorAll('#rows tbody tr')].find(tr => tr.dataset.clip === clip).querySelector('audio');
            const check = () => audio.readyState >= 1 ? done([audio.preload, audio.duration]) : setTimeout(check, 50);
            check();""", clip)
        assert duration[0] == 'metadata' and duration[1] == pytest.approx(sf.info(str(review.audio[clip])).duration, abs=0.02)
        left = driver.execute_async_script("""
            const [clip, done] = arguments;
            const tr = [...document.querySelectorAll('#rows tbody tr')].find(tr => tr.dataset.clip === clip);
            const audio = tr.querySelector('audio'), head = tr.querySelector('.playhead');
            audio.muted = true;
            audio.play().then(() => setTimeout(() => { audio.pause(); done([parseFloat(head.style.left), audio.currentTime]); }, 600), e => done([-1, 0]));""", clip)
        assert left[1] > 0 and left[0] == pytest.approx(left[1] * PIXELS_PER_SECOND, abs=PIXELS_PER_SECOND * 0.3)

        # spectrograms load, on one time scale: width proportional to the clip's duration
        widths = driver.execute_async_script("""
            const done = arguments[0], images = [...document.querySelectorAll('#rows tbody tr img')];
            Promise.all(images.map(image => image.decode().then(() => [image.closest('tr').dataset.clip, image.naturalWidth], () => null))).then(done);""")
        seconds = review.summary.seconds
        assert len(widths) == len(review.rows) and all(w is not None for w in widths)
        assert {clip: width for clip, width in widths} == {clip: round(seconds[clip] * PIXELS_PER_SECOND) for clip, _ in widths}

        # a filter keeps the selection on a visible row, returns the keys to the table, and a key then changes a visible row only
        driver.find_element(By.ID, 'rows').click()
        given = review.rows.given_label.value_counts().index[-1]          # the class with the fewest rows
        Select(driver.find_element(By.ID, 'filter-class')).select_by_value(given)
        in_class = set(review.rows['clip'][review.rows.given_label == given])
        assert set(visible(driver)) == in_class and selected(driver) in in_class
        assert js(driver, "return document.activeElement.id") == 'rows'
        target = selected(driver)
        press(driver, 'd')
        decisions_path = WorkFolder(fresh_work).decisions_csv
        wait_for(lambda: decisions_path.exists() and target in decisions_path.read_text(), what='the keyboard decision')
        assert set(read_corrections(decisions_path, review.classes)['clip']) == {target}
        Select(driver.find_element(By.ID, 'filter-class')).select_by_value('')

        # the "undecided" view: a decided row leaves it at once, the counts follow, the selection moves on to the next row
        Select(driver.find_element(By.ID, 'filter-decision')).select_by_value('undecided')
        before, first = visible(driver), selected(driver)
        assert target not in before and first in before                   # the selection stayed on its row, still visible
        at = before.index(first)
        press(driver, 'k')
        assert visible(driver) == before[:at] + before[at + 1:] and selected(driver) == before[at + 1]
        Select(driver.find_element(By.ID, 'filter-decision')).select_by_value('')

        # a click on "relabel" writes the decisions file (offered: the suggestion is confident)
        clicked = next(c for c in review.rows['clip'] if c not in (target, first) and review.rows.loc[c].confidence >= 0.5)
        row = driver.find_element(By.CSS_SELECTOR, f'#rows tbody tr[data-clip="{clicked}"]')
        js(driver, "arguments[0].scrollIntoView({block: 'center'})", row)
        row.find_element(By.CSS_SELECTOR, 'button[data-action="relabel-suggested"]').click()
        wait_for(lambda: clicked in decisions_path.read_text(), what='the click decision')
        suggested = review.rows.loc[clicked].suggested_label
        written = read_corrections(decisions_path, review.classes).set_index('clip')
        assert (written.loc[clicked].decision, written.loc[clicked].new_label) == ('relabel', suggested)

        # the shared class list: c, type, Enter
        chosen_clip = next(c for c in review.rows['clip'] if c not in (target, first, clicked))
        js(driver, "select(arguments[0])", chosen_clip)
        other = [c for c in review.classes if c != review.rows.loc[chosen_clip].given_label][-1]
        assert len(driver.find_elements(By.CSS_SELECTOR, 'select.relabel-to')) == 0   # no per-row class list
        press(driver, 'c')
        assert driver.find_element(By.ID, 'chooser').is_displayed()
        press(driver, other[:4].lower() + '\n')
        wait_for(lambda: chosen_clip in decisions_path.read_text(), what='the chosen relabel')
        assert read_corrections(decisions_path, review.classes).set_index('clip').loc[chosen_clip].new_label == other

        # the help overlay lists every key; Esc closes it
        press(driver, '?')
        help_text = driver.find_element(By.ID, 'help').text
        assert driver.find_element(By.ID, 'help').is_displayed()
        for key in ['n', 'p', 'space', 'k', 'r', 'c', 'd', 's', 'u', 'a', '/', '?', 'Esc', 'PageDown']: assert key in help_text, key
        from selenium.webdriver.common.keys import Keys
        press(driver, Keys.ESCAPE)
        assert not driver.find_element(By.ID, 'help').is_displayed()

        # header and legend stay in view when the table scrolls
        js(driver, "window.scrollTo(0, document.body.scrollHeight)")
        assert js(driver, "return document.querySelector('#bar').getBoundingClientRect().top") == 0
        assert driver.find_element(By.ID, 'legend').is_displayed()

        # the guide says where decisions go and how they are used
        guide = driver.find_element(By.ID, 'guide').text
        assert str(decisions_path) in guide and '--corrections' in guide

        # a reload shows the decisions, and the summary counts them
        driver.refresh()
        wait_for(lambda: js(driver, "return document.body.dataset.ready === 'true'"), what='the reload')
        row = driver.find_element(By.CSS_SELECTOR, f'#rows tbody tr[data-clip="{clicked}"]')
        assert row.get_attribute('data-decision') == 'relabel'
        assert row.find_element(By.CSS_SELECTOR, '.decision').text == f'relabel \u2192 {suggested}'
        assert driver.find_element(By.CSS_SELECTOR, f'#rows tbody tr[data-clip="{target}"]').get_attribute('data-decision') == 'drop'
        summary = js(driver, """return Object.fromEntries([...document.querySelectorAll('#summary tr[data-class]')].map(tr =>
            [tr.dataset.class, Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map(td => [td.dataset.field, Number(td.textContent)]))]))""")
        assert set(summary) == set(review.rows.given_label)
        assert [sum(counts[field] for counts in summary.values()) for field in ('flagged', 'decided', 'relabelled', 'dropped')] == \
               [int(review.rows.kind.eq('flagged').sum()), 4, 2, 1]

@needs_browser
def test_r_only_where_the_suggestion_is_confident(fresh_work, browser):
    driver = browser
    with ReviewServer(fresh_work, port=0, sample=3) as server:
        open_page(driver, server.url)
        clip = server.review.rows['clip'].iloc[0]
        js(driver, "state.byClip.get(arguments[0]).confidence = 0.3; select(arguments[0])", clip)     # as if the models were unsure
        press(driver, 'r')
        assert 'unsure' in banners(driver)
        time.sleep(0.5)
        assert not (WorkFolder(fresh_work).decisions_csv).exists()

@needs_browser
def test_lost_server_keeps_the_decision_and_sends_it_later(fresh_work, browser):
    driver = browser
    server = ReviewServer(fresh_work, port=0).start()
    port = server.httpd.server_address[1]
    open_page(driver, server.url)
    server.stop()
    clip = selected(driver)
    press(driver, 'd')
    wait_for(lambda: 'server' in banners(driver) and 'unsaved' in banners(driver), what='the banners')
    assert js(driver, "return document.querySelector(`tr[data-clip='${arguments[0]}']`).dataset.pending", clip) == 'true'
    time.sleep(3)
    assert 'unsaved' in banners(driver) and not (WorkFolder(fresh_work).decisions_csv).exists()         # the banner stays; nothing written
    with ReviewServer(fresh_work, port=port):
        decisions_path = WorkFolder(fresh_work).decisions_csv
        wait_for(lambda: decisions_path.exists() and clip in decisions_path.read_text(), timeout=20, what='the retried decision')
        wait_for(lambda: not {'server', 'unsaved'} & set(banners(driver)), what='the banners to clear')
        assert read_corrections(decisions_path, server.review.classes).set_index('clip').loc[clip].decision == 'drop'

def clopper_pearson_by_bisection(n:int, errors:int, alpha:float=0.05)->float:
    "The precision p at which P(at least n - errors correct of n | p) = alpha, by bisection on the binomial tail summed directly."
    tail = lambda p: sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n - errors, n + 1))
    low, high = 0.0, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (low, middle) if tail(middle) > alpha else (middle, high)
    return (low + high) / 2

@needs_browser
def test_audit_of_accepted_clips(fresh_work, browser):
    driver = browser
    folder = fresh_work/'tiny'/'selfverify'
    audit = pd.read_csv(folder/'audit.csv')
    kept = load_json(folder/'result.json')['best_iteration']
    population = set(audit['clip'][(audit.iteration == kept) & audit.accepted.astype(bool)])
    assert len(population) >= 5, "the tiny run should accept a few clips in its kept iteration"
    with ReviewServer(fresh_work, port=0, audit_accepted=5, seed=3) as server:
        sample = server.review.audit['clips']
        assert set(sample) <= population and len(set(sample)) == 5
        assert load_review(fresh_work, audit_accepted=5, seed=3).audit['clips'] == sample        # reproducible
        open_page(driver, server.url)
        press(driver, 'a')                                                                          # the audit view
        shown = visible(driver)
        assert set(shown) == set(sample)
        assert js(driver, "return [...document.querySelectorAll('#rows tbody tr .badge')].every(b => b.textContent === 'audit sample')")
        first_given = server.review.rows.loc[shown[0]].given_label
        choice = next(c for c in server.review.classes if c != first_given)
        press(driver, 'c'); press(driver, choice + '\n')       # relabel: an error
        press(driver, 'k'); press(driver, 'k')                  # two right
        press(driver, 'd')                                      # dropped: an error
        press(driver, 's')                                      # skipped: not counted
        box = lambda: js(driver, "const d = document.querySelector('#audit').dataset; return [d.checked, d.errors, d.bound]")
        wait_for(lambda: box()[0] == '4', what='the audit count')
        checked, errors, bound = box()
        assert (int(checked), int(errors)) == (4, 2)
        assert float(bound) == pytest.approx(clopper_pearson_by_bisection(4, 2), abs=1e-6)
        report = read_accepted_audit(fresh_work)
        assert (report['checked'], report['errors'], report['undecided'], report['population']) == (4, 2, 1, len(population))
        assert sorted(report['error_clips']) == sorted([shown[0], shown[3]])
        assert report['precision_lower_bound'] == pytest.approx(clopper_pearson_by_bisection(4, 2), abs=1e-6)
        assert metrics_entry(fresh_work)['accepted_audit']['precision_lower_bound'] == report['precision_lower_bound']
        assert 'Precision of the accepted labels' in driver.find_element('id', 'audit').text
    assert clopper_pearson_by_bisection(99, 0) == pytest.approx(0.970, abs=5e-4)

def send(server:ReviewServer, method:str, path:str, body:bytes|None=None, headers:dict|None=None, timeout:float=30)->tuple[int, bytes]:
    "One raw HTTP request (the path and headers sent exactly as given)."
    connection = http.client.HTTPConnection(*server.httpd.server_address[:2], timeout=timeout)
    connection.putrequest(method, path, skip_host='Host' in (headers or {}), skip_accept_encoding=True)
    for name, value in (headers or {}).items(): connection.putheader(name, value)
    if body is not None and 'Content-Length' not in (headers or {}) and 'Transfer-Encoding' not in (headers or {}):
        connection.putheader('Content-Length', str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = (response.status, response.read())
    connection.close()
    return answer

BAD_PATHS = ['/../run.json', '/audio/../run.json', '/audio/%2e%2e/run.json', '/audio/..%2f..%2frun.json', '/audio/%2E%2E%2Frun.json',
             '/spectrogram/%2e%2e%2fmetrics.json.png', '/static/../run.json', '/static/other.js', '//etc/passwd', '/etc/passwd',
             '/audio//etc/passwd', '/audio/%2Fetc%2Fpasswd', '/spectrogram//etc/passwd.png', '/audio/nope.wav', '/spectrogram/nope.wav.png',
             '/run.json', '/review/decisions.csv', '/features/train/v1/summary.csv', '/audio/', '/api/decision/..']

def test_bad_requests_change_nothing(fresh_work, tmp_path):
    # a feature file that is a link out of the work folder
    review_rows = load_review(fresh_work).rows
    linked_clip = review_rows['clip'].iloc[1]
    feature = next((fresh_work/'features'/'train').glob(f'v*/{linked_clip}.npy'))
    outside = tmp_path/'outside.npy'
    shutil.move(feature, outside)
    feature.symlink_to(outside)
    with ReviewServer(fresh_work, port=0, timeout=1, prerender=False) as server:
        review = server.review
        clip = review.rows['clip'].iloc[0]
        json_headers = {'Content-Type': 'application/json'}
        good = json.dumps({'clip': clip, 'decision': 'keep'}).encode()
        assert send(server, 'POST', '/api/decision', good, json_headers)[0] == 200
        assert send(server, 'POST', '/api/decision', good, {'Content-Type': 'APPLICATION/JSON'})[0] == 200
        assert send(server, 'POST', '/api/decision', good, {'Content-Type': 'application/json; charset=utf-8',
                                                            'Origin': server.url.rstrip('/'), 'Sec-Fetch-Site': 'same-origin'})[0] == 200
        decisions_path = WorkFolder(fresh_work).decisions_csv
        before = decisions_path.read_bytes()
        for path in BAD_PATHS + [f'/audio/{clip}/x', f'/audio/{clip}/..', f'/spectrogram/{clip}']:
            assert send(server, 'GET', path)[0] == 404, path
        bad_decisions = [b'{clip', b'[1, 2]', b'"keep"', json.dumps({'clip': 'nope.wav', 'decision': 'keep'}).encode(),
                         json.dumps({'clip': clip, 'decision': 'maybe'}).encode(), json.dumps({'clip': clip, 'decision': 'relabel'}).encode(),
                         json.dumps({'clip': clip, 'decision': 'relabel', 'new_label': 'Banjo'}).encode(), b'\xff\xfe',
                         b'[' * 30000 + b']' * 30000, b'{"clip": ' + b'[' * 20000 + b']' * 20000 + b'}']
        for body in bad_decisions:
            status, answer = send(server, 'POST', '/api/decision', body, json_headers)
            assert status == 400 and json.loads(answer)['error'], body[:40]
        assert 'unknown class' in json.loads(send(server, 'POST', '/api/decision', bad_decisions[6], json_headers)[1])['error']
        malformed = {
            'Content-Length letters': ('POST', '/api/decision', good, {**json_headers, 'Content-Length': '12abc'}),
            'Content-Length negative': ('POST', '/api/decision', good, {**json_headers, 'Content-Length': '-5'}),
            'Content-Length 5,000 digits': ('POST', '/api/decision', good, {**json_headers, 'Content-Length': '9' * 5000}),
            'Content-Length too large': ('POST', '/api/decision', good, {**json_headers, 'Content-Length': '99999999'}),
            'Content-Length missing': ('POST', '/api/decision', None, json_headers),
            'Content-Length empty body': ('POST', '/api/decision', b'', json_headers),
            'Content-Length beyond the body': ('POST', '/api/decision', good, {**json_headers, 'Content-Length': str(len(good) + 50)}),
            'chunked': ('POST', '/api/decision', b'5\r\nhello\r\n0\r\n\r\n', {**json_headers, 'Transfer-Encoding': 'chunked'}),
            'Range 5,000 digits': ('GET', f'/audio/{clip}', None, {'Range': 'bytes=' + '9' * 5000 + '-'}),
            'Range garbage': ('GET', f'/audio/{clip}', None, {'Range': 'bytes=a-b'}),
            'Host 5,000 digits': ('GET', '/', None, {'Host': 'localhost:' + '9' * 5000}),
            'Host malformed': ('GET', '/api/state', None, {'Host': 'local host'}),
            'symlinked feature file': ('GET', f'/spectrogram/{linked_clip}.png', None, {}),
        }
        statuses = {what: send(server, *request)[0] for what, request in malformed.items()}
        assert statuses == {what: 400 for what in malformed}, statuses
        refused = {
            'text/plain': ('POST', '/api/decision', good, {'Content-Type': 'text/plain'}, 415),
            'application/json-evil': ('POST', '/api/decision', good, {'Content-Type': 'application/json-evil'}, 415),
            'other origin': ('POST', '/api/decision', good, {**json_headers, 'Origin': 'http://evil.example'}, 403),
            'Origin: null': ('POST', '/api/decision', good, {**json_headers, 'Origin': 'null'}, 403),
            'Sec-Fetch-Site: cross-site': ('POST', '/api/decision', good, {**json_headers, 'Sec-Fetch-Site': 'cross-site'}, 403),
            'DNS rebinding': ('GET', '/', None, {'Host': 'attacker.example:8765'}, 403),
            'POST elsewhere': ('POST', '/audio/' + clip, good, json_headers, 404),
            'past the end': ('GET', f'/audio/{clip}', None, {'Range': 'bytes=99999999-'}, 416),
        }
        statuses = {what: send(server, *request[:4])[0] for what, request in refused.items()}
        assert statuses == {what: request[4] for what, request in refused.items()}, statuses
        # a decisions file edited into something malformed: a 400 that says so, and the file left as it is
        decisions_path.write_text('clip,decision,new_label\nx.wav,maybe,\n')
        status, answer = send(server, 'POST', '/api/decision', good, json_headers)
        assert (status, json.loads(answer)['kind']) == (400, 'decisions-file')
        assert decisions_path.read_text() == 'clip,decision,new_label\nx.wav,maybe,\n'
        assert json.loads(send(server, 'GET', '/api/state')[1])['decisions_error']
        decisions_path.write_bytes(before)
        assert decisions_path.read_bytes() == before
        # what is served: the page, its assets, and the clips of the review
        assert send(server, 'GET', '/')[0] == 200 and send(server, 'GET', '/static/review.js')[0] == 200
        status, audio = send(server, 'GET', f'/audio/{clip}', headers={'Range': 'bytes=0-3'})
        assert (status, audio) == (206, b'RIFF')
        status, png = send(server, 'GET', f'/spectrogram/{clip}.png')
        assert status == 200 and png[:4] == b'\x89PNG'
        assert [p.parent.relative_to(fresh_work).as_posix() for p in (fresh_work/'review').rglob('*.png')] == ['review/cache/spectrograms']

def test_a_fault_of_the_server_is_a_500(fresh_work, monkeypatch):
    import dcase_selfverify.review_server as review_server
    def broken(*args, **kwargs): raise RuntimeError('a bug')
    with ReviewServer(fresh_work, port=0, prerender=False) as server:
        monkeypatch.setattr(review_server, 'review_state', broken)
        status, answer = send(server, 'GET', '/api/state')
        assert (status, json.loads(answer)['kind']) == (500, 'server')
        assert send(server, 'GET', '/api/ping')[0] == 200                      # and it goes on answering

def test_a_stalled_connection_frees_its_thread(fresh_work):
    with ReviewServer(fresh_work, port=0, timeout=0.5, prerender=False) as server:
        stalled = socket.create_connection(server.httpd.server_address[:2])
        stalled.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\n')
        stalled.settimeout(5)
        started = time.time()
        assert stalled.recv(100) == b'' and time.time() - started < 3
        stalled.close()

def test_binding(fresh_work):
    assert inspect.signature(serve_review).parameters['host'].default == '127.0.0.1'
    assert inspect.signature(ReviewServer).parameters['host'].default == '127.0.0.1'
    server = ReviewServer(fresh_work, port=0, prerender=False)
    try:
        assert server.httpd.server_address[0] == '127.0.0.1' and server.url.startswith('http://127.0.0.1:')
        with pytest.raises(PortInUseError, match='in use'): ReviewServer(fresh_work, port=server.httpd.server_address[1])
    finally: server.stop()
    with pytest.raises(UnsafeBindError, match='--token'): ReviewServer(fresh_work, host='0.0.0.0', port=0)
    with ReviewServer(fresh_work, host='0.0.0.0', port=0, token='s3cret', prerender=False) as server:
        assert send(server, 'GET', '/', headers={'Host': 'review.lan'})[0] == 401
        assert send(server, 'GET', '/spectrogram/x.png', headers={'Host': 'review.lan', 'Cookie': 'review_token=wrong'})[0] == 401
        assert send(server, 'GET', '/?token=s3cret', headers={'Host': 'review.lan'})[0] == 200
        assert send(server, 'GET', '/api/state', headers={'Host': 'review.lan', 'Cookie': 'review_token=s3cret'})[0] == 200
        body = json.dumps({'clip': server.review.rows['clip'].iloc[0], 'decision': 'skip'}).encode()
        assert send(server, 'POST', '/api/decision', body, {'Host': 'review.lan', 'Content-Type': 'application/json'})[0] == 401
    if socket.has_ipv6:
        with ReviewServer(fresh_work, host='::1', port=0, prerender=False) as server:
            assert server.url.startswith('http://[::1]:')
            port = server.httpd.server_address[1]
            assert send(server, 'GET', '/api/ping', headers={'Host': f'[::1]:{port}'})[0] == 200
            assert send(server, 'GET', '/api/ping', headers={'Host': f'evil.example:{port}'})[0] == 403

def test_two_tabs_lose_no_decision(fresh_work):
    "Two clients posting at once, as two open tabs would: every decision arrives."
    with ReviewServer(fresh_work, port=0, include_accepted=True, sample=100, prerender=False) as server:
        clips = server.review.rows['clip'].tolist()
        def post_all(part):
            for clip in part:
                body = json.dumps({'clip': clip, 'decision': 'skip'}).encode()
                assert send(server, 'POST', '/api/decision', body, {'Content-Type': 'application/json'})[0] == 200
        tabs = [threading.Thread(target=post_all, args=(clips[i::2],)) for i in range(2)]
        for tab in tabs: tab.start()
        for tab in tabs: tab.join()
        assert sorted(read_corrections(WorkFolder(fresh_work).decisions_csv, server.review.classes)['clip']) == sorted(clips)
        state = json.loads(send(server, 'GET', '/api/state')[1])
        assert set(state['decisions']) == set(clips)

def test_every_rule_is_found(fresh_work):
    assert load_review(fresh_work).rule == 'paper'
    shutil.copytree(fresh_work/'tiny'/'selfverify', fresh_work/'tiny'/'selfverify_cleanlab')
    assert load_review(fresh_work).rule == 'paper'                                   # the default, when it is there
    assert load_review(fresh_work, rule='cleanlab').rule == 'cleanlab'
    shutil.rmtree(fresh_work/'tiny'/'selfverify')
    review = load_review(fresh_work)                                                   # the only one
    assert review.rule == 'cleanlab' and review.rows.kind.eq('flagged').sum() > 0
    with pytest.raises(UnknownRuleError, match='holds: cleanlab'): load_review(fresh_work, rule='paper')

def test_review_without_results_fails_clearly(tmp_path, fresh_work):
    with pytest.raises(NoResultsError, match='No self-verification results'): load_review(tmp_path)
    with pytest.raises(WorkFolderNotFoundError, match='Work folder not found'): load_review(tmp_path/'nowhere')
    (fresh_work/'tiny'/'selfverify'/'result.json').unlink()
    with pytest.raises(AuditSampleError, match='no kept iteration'): load_review(fresh_work, audit_accepted=3)
    assert issubclass(ReviewError, UserError) and not issubclass(ReviewError, ValueError)
    assert read_accepted_audit(tmp_path) is None and metrics_entry(tmp_path) == {}
