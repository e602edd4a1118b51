"""Both READMEs have the same structure and the same commands, and the
cheap commands run."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding='utf-8') as f:
        return f.read()


def _headings(text):
    return re.findall(r'^#+ ', text, flags=re.M)


def _code_blocks(text):
    return re.findall(r'```(?:bash)?\n(.*?)```', text, flags=re.S)


def _commands(text):
    return [l for b in _code_blocks(text) for l in b.splitlines()
            if l.strip() and not l.startswith('#')]


def test_same_headings_and_code_blocks():
    en, jp = _read('README.md'), _read('README_JP.md')
    assert _headings(en) == _headings(jp)
    assert _commands(en) == _commands(jp)


def test_first_two_commands_are_setup_and_tests():
    cmds = _commands(_read('README.md'))
    assert cmds[0] == 'bash setup.sh && .venv/bin/python train.py'
    assert cmds[1] == '.venv/bin/python -m pytest'
    ci = _read('.ci/run')
    assert cmds[1] in ci and 'bash setup.sh' in ci


@pytest.mark.parametrize('script', ['train.py', 'demo.py',
                                    'utils/detectron_parser.py',
                                    'bench/inference.py', 'bench/roi_align.py'])
def test_every_cli_explains_its_flags(script):
    proc = subprocess.run([sys.executable, script, '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cmds = _commands(_read('README.md'))
    # Every flag a README command passes to this script exists.
    for cmd in cmds:
        if script in cmd:
            for flag in re.findall(r'(--[a-z][a-z0-9-]*)', cmd):
                assert flag in proc.stdout, (script, flag)
