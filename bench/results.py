"Shared by the benchmark scripts: the machine they ran on, and their own section of bench/RESULTS.md."
import platform, re
from pathlib import Path

def cpu_model()->str:
    "The CPU's model name."
    cpuinfo = Path('/proc/cpuinfo')
    match = re.search(r'model name\s*:\s*(.*)', cpuinfo.read_text()) if cpuinfo.exists() else None
    return match.group(1).strip() if match else (platform.processor() or 'unknown')

def write_section(path:Path, text:str, heading:str):
    "Replace (or append) the section under `heading` of RESULTS.md, leaving every other section as it is."
    old = path.read_text() if path.exists() else '# Benchmark results\n'
    pattern = re.compile(rf'^{re.escape(heading)}\n.*?(?=^## |\Z)', re.S | re.M)
    new = pattern.sub(lambda m: text, old) if pattern.search(old) else old.rstrip('\n') + '\n\n' + text
    path.write_text(new)
