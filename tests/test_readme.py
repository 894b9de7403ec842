"""The README's ten-line Python API example runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    cmds = [l.split("#")[0].strip() for l in block.splitlines() if l.strip()]
    assert cmds == ["make demo", "make test"]
    assert text.index("make demo") < text.index("## ")


def test_readme_python_example_runs():
    text = README.read_text()
    code = re.search(r"## Python API in ten lines\s+```python\n(.*?)```", text, re.S).group(1)
    assert len([l for l in code.splitlines() if l.strip()]) <= 12
    ns = {}
    exec(compile(code, str(README), "exec"), ns)
    traj, cond = ns["traj"], ns["cond"]
    assert traj.num_frames == 72 and traj.status == "ok"
    hero = traj.character_index("hero")
    assert abs(traj.com_pos[-1, hero, 0] - 4.0) < 0.5
    assert [s.camera for s in cond.shots] == ["follow", "wide"]
    assert cond.shots[0].layers["depth"].shape[1:] == (144, 256)
