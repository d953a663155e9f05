"""How fast the review page is ready with 2,000 rows, against the page before issue 16 (baseline), in one process and one Chromium.

    python bench/review_rows.py [--rows 2000] [--repeats 3] [--write]

Builds a synthetic work folder: one preset, one self-verification round, `--rows` flagged clips over 41 classes (FSDKaggle2018's
count) with saved posteriors, and a version-1 feature file per clip of 0.5 to 30 s (no audio: the data set in run.json does not exist,
so neither page has players, and both are measured the same way). The baseline is `dcase_selfverify/review.py` of commit BASELINE
(its page held every row in the DOM, each with a <select> of all classes, and drew spectrograms with matplotlib on request),
loaded from git into this process. For each page, interleaved, `--repeats` times: seconds from navigation to the page's `data-ready`
(rows drawn, keys live), and to every spectrogram in the first screen loaded. For the new page the spectrograms are drawn ahead first
(timed: that is the background work a server start does), then it counts the images of page 2 already loaded the moment it is shown.
`--write` replaces the "Review page" section of bench/RESULTS.md.
"""
import argparse, datetime, importlib.util, json, os, platform, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASELINE = '967c6ef'          # the last commit before the review page's rework (issue 16)

def make_work(folder:Path, n_rows:int, n_classes:int=41, seed:int=0)->Path:
    "A work folder with `n_rows` flagged clips, their posteriors and features."
    rng = np.random.default_rng(seed)
    classes = [f'Class_{i:02d}' for i in range(n_classes)]
    clips = [f'{i:08x}.wav' for i in rng.choice(16 ** 8, n_rows, replace=False)]
    given = rng.integers(0, n_classes, n_rows)
    predicted = (given + rng.integers(1, n_classes, n_rows)) % n_classes
    probs = rng.dirichlet(np.full(n_classes, 0.1), n_rows).astype(np.float32) * 0.05
    probs[np.arange(n_rows), predicted] += 0.95
    probs /= probs.sum(1, keepdims=True)
    sv = folder/'tiny'/'selfverify'
    sv.mkdir(parents=True)
    decisions = pd.DataFrame({'fname': clips, 'fold': rng.integers(0, 4, n_rows), 'iteration': 1, 'given': given, 'predicted': predicted,
                              'p_given': probs[np.arange(n_rows), given], 'p_predicted': probs[np.arange(n_rows), predicted],
                              'accepted': False, 'given_label': [classes[i] for i in given], 'predicted_label': [classes[i] for i in predicted]})
    decisions.to_csv(sv/'decisions_01.csv', index=False)
    np.save(sv/'posteriors_01.npy', probs)
    decisions.rename(columns={'fname': 'clip'})[['clip', 'fold', 'iteration', 'given_label', 'predicted_label', 'p_given', 'p_predicted',
                                                 'accepted']].to_csv(sv/'audit.csv', index=False)
    (sv/'result.json').write_text(json.dumps({'best_iteration': 1, 'checkpoints': {}}))
    features = folder/'features'/'train'/'v1'
    features.mkdir(parents=True)
    seconds = rng.uniform(0.5, 30, n_rows)
    for clip, s in zip(clips, seconds):
        np.save(features/f'{clip}.npy', rng.normal(0, 1, (128, max(2, int(s * 0.9 * 32000 / 192)))).astype(np.float16))
    pd.DataFrame({'fname': clips, 'status': 'ok', 'frames': 0, 'seconds': seconds, 'clipped_seconds': seconds * 0.9, 'error': ''}
                ).to_csv(features/'summary.csv', index=False)
    (folder/'run.json').write_text(json.dumps({'data': str(folder/'no_data'), 'presets': [{'name': 'tiny', 'version': 1}]}))
    (folder/'metrics.json').write_text(json.dumps({'classes': classes}))
    return folder

def baseline_module(commit:str=BASELINE, own:tuple=('corrections',)):
    """The review module of `commit`, loaded from git as `baseline_review`. The modules named in `own` come from the same commit
    (as `baseline_<name>`: the page's decisions code has changed since); its other relative imports use this checkout's package."""
    def load(name:str):
        source = subprocess.run(['git', '-C', str(ROOT), 'show', f'{commit}:dcase_selfverify/{name}.py'], capture_output=True, text=True, check=True).stdout
        for dependency in own: source = source.replace(f'from .{dependency} import', f'from baseline_{dependency} import')
        source = re.sub(r'from \.(\w+) import', r'from dcase_selfverify.\1 import', source)
        path = Path(tempfile.mkdtemp())/f'baseline_{name}.py'
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f'baseline_{name}', path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[f'baseline_{name}'] = module
        spec.loader.exec_module(module)
        return module
    for dependency in own: load(dependency)
    return load('review')

def browser(profile:Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = '/usr/bin/chromium'
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1300,900',
                 '--disable-background-networking', '--no-first-run', f'--user-data-dir={profile}'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
    driver.set_script_timeout(120)
    return driver

FIRST_SCREEN = """const done = arguments[0];
const wanted = () => [...document.querySelectorAll('#rows tbody tr:not([hidden]) img')].filter(i => i.getBoundingClientRect().top < innerHeight);
const check = () => wanted().every(i => i.complete && i.naturalWidth > 0) ? done(performance.now()) : setTimeout(check, 20);
check();"""

def time_page(driver, url:str)->tuple[float, float]:
    "Seconds from navigation to data-ready, and to the first screen's spectrograms loaded."
    driver.get('about:blank')
    start = time.perf_counter()
    driver.get(url)
    while not driver.execute_script("return document.body && document.body.dataset.ready === 'true'"): time.sleep(0.005)
    ready = time.perf_counter() - start
    driver.execute_async_script(FIRST_SCREEN)
    return ready, time.perf_counter() - start

def page_two_loaded(driver)->tuple[int, int]:
    "Of page 2's spectrograms, how many are already loaded the moment it is shown (prefetched while page 1 was read)."
    time.sleep(1.0)
    return tuple(driver.execute_script("""turnPage(1);
        const images = [...document.querySelectorAll('#rows tbody tr img')];
        return [images.filter(i => i.complete && i.naturalWidth > 0).length, images.length];"""))

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=2000)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--write', action='store_true')
    args = parser.parse_args()
    from dcase_selfverify.review import load_review
    from dcase_selfverify.review_server import ReviewServer
    scratch = Path(tempfile.mkdtemp())
    load_before = os.getloadavg()[0]
    work = make_work(scratch/'work', args.rows)
    started = time.perf_counter(); review = load_review(work); load_seconds = time.perf_counter() - started
    new_server = ReviewServer(review, port=0, prerender=False)
    started = time.perf_counter(); drawn = new_server.cache.prerender(); draw_seconds = time.perf_counter() - started
    new_server.start()
    old = baseline_module()
    started = time.perf_counter(); old_server = old.ReviewServer(work, port=0).start(); old_load_seconds = time.perf_counter() - started
    driver = browser(scratch/'profile')
    times = {'this branch': [], 'baseline': []}
    try:
        for _ in range(args.repeats):
            times['this branch'].append(time_page(driver, new_server.url))
            times['baseline'].append(time_page(driver, old_server.url))
        driver.get(new_server.url)
        while not driver.execute_script("return document.body && document.body.dataset.ready === 'true'"): time.sleep(0.01)
        driver.execute_async_script(FIRST_SCREEN)
        prefetched = page_two_loaded(driver)
        dom = {name: driver.execute_script("return document.querySelectorAll('*').length") for name in ['this branch']}
        driver.get(old_server.url)
        while not driver.execute_script("return document.body && document.body.dataset.ready === 'true'"): time.sleep(0.01)
        dom['baseline'] = driver.execute_script("return document.querySelectorAll('*').length")
    finally:
        driver.quit(); new_server.stop(); old_server.stop()
    median = {name: (statistics.median(r for r, _ in rows), statistics.median(f for _, f in rows)) for name, rows in times.items()}
    chromium = subprocess.run(['/usr/bin/chromium', '--version'], capture_output=True, text=True).stdout.strip()
    lines = [f"`python bench/review_rows.py` ({datetime.date.today().isoformat()}): a synthetic work folder of {args.rows:,} flagged clips, "
             f"41 classes, one version-1 feature file per clip of 0.5 to 30 s, no audio; headless {chromium} at 1300x900 via chromedriver, "
             f"both servers in this process, {args.repeats} repetitions interleaved, median.",
             f"Machine: `nproc` = {os.cpu_count()}, {platform.processor() or platform.machine()}; Python {platform.python_version()}; "
             f"load average {load_before:.2f} at the start (the machine is shared).",
             f"Baseline: the review page of commit {BASELINE} (every row in the DOM, each with a `<select>` of all classes; matplotlib images on request), loaded from git into the same process.",
             '', '| page | ready (s) | first screen of spectrograms (s) | DOM elements | repeats: ready (s) |', '|---|---|---|---|---|']
    for name in ('this branch', 'baseline'):
        lines.append(f"| {name} | {median[name][0]:.2f} | {median[name][1]:.2f} | {dom[name]:,} | {', '.join(f'{r:.2f}' for r, _ in times[name])} |")
    lines += ['', f"Ready: baseline / this branch = **{median['baseline'][0] / median['this branch'][0]:.1f}x**; first screen of spectrograms: "
              f"**{median['baseline'][1] / median['this branch'][1]:.1f}x**. Aim of issue 16: ready in under 2 s "
              f"({'met' if median['this branch'][0] < 2 else 'missed'}: {median['this branch'][0]:.2f} s).",
              f"Server side: `load_review` of the {args.rows:,} rows {load_seconds:.2f} s (the baseline's load {old_load_seconds:.2f} s); drawing all "
              f"{drawn:,} spectrograms ahead into the disk cache {draw_seconds:.1f} s ({1000 * draw_seconds / max(drawn, 1):.1f} ms each, one thread, "
              f"in the background while the page is in use). With page 1's images loaded, {prefetched[0]} of the {prefetched[1]} spectrograms of page 2 "
              f"were already loaded the moment it was shown (prefetched): no blank spectrogram after the first render."]
    text = '\n'.join(lines)
    print(text)
    if args.write:
        results = ROOT/'bench'/'RESULTS.md'
        old_text = results.read_text()
        section = '## Review page\n\n' + text + '\n'
        old_text = re.sub(r'## Review page\n.*?(?=\n## |\Z)', '', old_text, flags=re.S).rstrip('\n') + '\n\n'
        results.write_text(old_text + section)
    shutil.rmtree(scratch, ignore_errors=True)

if __name__ == '__main__': main()
