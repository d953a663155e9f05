"""Render nbs/index.ipynb to README.md (Quarto, which nbdev-readme needs, cannot be installed here).

    python tools/readme.py           # write README.md
    python tools/readme.py --check   # exit 1 if README.md differs from the notebook
"""
import sys
from pathlib import Path
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parents[1]
body, _ = MarkdownExporter().from_filename(str(root/'nbs'/'index.ipynb'))
text = body.strip() + '\n'
readme = root/'README.md'
if '--check' in sys.argv:
    if not readme.exists() or readme.read_text() != text:
        sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/readme.py`')
    print('README.md matches nbs/index.ipynb')
else:
    readme.write_text(text)
    print(f'wrote {readme}')
