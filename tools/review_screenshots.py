"""The screenshots of the review page in nbs/09b_review_server.ipynb: main page, a filtered view, the audit view and the help overlay.

    python tools/review_screenshots.py [SCRATCH_FOLDER]

Makes a small real run (demo data: 4 classes, 16 training clips each; `tiny` network, 2 epochs, one self-verification round, CPU;
about a minute) unless SCRATCH_FOLDER/work already holds one, serves it with `--audit-accepted 6`, drives the page in headless
Chromium (Debian's chromium and chromedriver) as a curator would, and writes nbs/images/review*.png (256-colour PNG, to stay small).
"""
import io, shutil, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def main():
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.demo_data import make_demo_dataset
    from dcase_selfverify.pipeline import run_pipeline
    from dcase_selfverify.review_server import ReviewServer
    scratch = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    work = scratch/'work'
    if not (work/'tiny'/'selfverify'/'result.json').is_file():
        data = make_demo_dataset(scratch/'data', n_classes=4, clips_per_class=16, test_clips_per_class=2, max_duration=8.0)
        run_pipeline(data, work, presets=[get_preset('tiny', epochs=2, finetune_epochs=1, sv_iterations=1)], device='cpu',
                     progress=False, export=False, log=lambda message: None)
    shutil.rmtree(work/'review', ignore_errors=True)
    options = webdriver.ChromeOptions()
    options.binary_location = '/usr/bin/chromium'
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1300,860', '--hide-scrollbars'):
        options.add_argument(flag)
    images = ROOT/'nbs'/'images'
    def shot(name:str):
        png = driver.get_screenshot_as_png()
        Image.open(io.BytesIO(png)).convert('RGB').quantize(256).save(images/name, optimize=True)
        print(name, (images/name).stat().st_size, 'bytes')
    keys = lambda text: (ActionChains(driver).send_keys(text).perform(), time.sleep(0.4))
    with ReviewServer(work, port=0, audit_accepted=6) as server:
        driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=options)
        try:
            driver.get(server.url)
            while driver.execute_script("return document.body.dataset.ready") != 'true': time.sleep(0.1)
            server.cache.thread.join()
            driver.refresh()
            while driver.execute_script("return document.body.dataset.ready") != 'true': time.sleep(0.1)
            time.sleep(1)
            driver.execute_script("state.auditFile = 'WORK/review/accepted_audit.json'; renderAudit(); "     # no local paths in the images
                                  "document.querySelector('#decisions-path').textContent = 'WORK/review/decisions.csv'")
            keys('r'); keys('k'); keys('d')                                   # three decisions on the first rows
            driver.execute_script('window.scrollTo(0, 0)'); time.sleep(0.5)
            shot('review.png')
            given = driver.execute_script("return state.rows[0].given_label")
            Select(driver.find_element(By.ID, 'filter-class')).select_by_value(given)
            Select(driver.find_element(By.ID, 'filter-decision')).select_by_value('undecided')
            driver.execute_script("document.querySelector('#guide').open = false; window.scrollTo(0, 0)"); time.sleep(0.5)
            shot('review_filtered.png')
            Select(driver.find_element(By.ID, 'filter-class')).select_by_value('')
            Select(driver.find_element(By.ID, 'filter-decision')).select_by_value('')
            keys('a'); keys('k'); keys('k'); keys('k'); keys('d')             # the audit sample: three right, one wrong
            time.sleep(1)
            driver.execute_script('window.scrollTo(0, 0)'); time.sleep(0.5)
            shot('review_audit.png')
            keys('?')
            shot('review_help.png')
        finally: driver.quit()

if __name__ == '__main__': main()
