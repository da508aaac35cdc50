"""``report.md`` of the demo: a failure to render the examples is not hidden."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from liftgs import demo_report
from liftgs.demo import DemoPlan


def _state(out):
    zero_shot = {"model": {"acc@0.25": 0.5, "acc@0.5": 0.25, "n": 8},
                 "random": {"acc@0.25": 0.125, "acc@0.5": 0.0, "n": 8}}
    return SimpleNamespace(out=out, plan=DemoPlan(rooms=5, pretrain_steps=2, finetune_steps=1, eval_scenes=1),
                           results={"zero_shot": zero_shot, "eval_scenes": ["room4"]},
                           timings={"1/6 synthetic rooms (5)": 3.0})


def test_report_with_examples(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_report, "examples", lambda state, data, encoder: ["**room4** example", ""])
    text = demo_report.write_report(_state(tmp_path), tmp_path / "data", encoder=None).read_text()
    assert "## Examples\n\n**room4** example" in text and "Error" not in text
    assert "| pre-trained (2D supervision only) | 50.0 | 25.0 | 8 |" in text
    assert "Pre-trained / random at Acc@0.25: 4.0x." in text


def test_example_failure_fails_the_report_and_is_written_at_its_top(tmp_path, monkeypatch):
    def broken(state, data, encoder):
        raise KeyError("target 7")

    monkeypatch.setattr(demo_report, "examples", broken)
    with pytest.raises(demo_report.ExampleRenderError, match="rendering the examples failed") as exc:
        demo_report.write_report(_state(tmp_path), tmp_path / "data", encoder=None)
    assert isinstance(exc.value.__cause__, KeyError)  # the original error and its traceback are kept
    assert str(tmp_path / "report.md") in str(exc.value)
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert lines[0] == "# liftgs demo report"
    assert lines[2].startswith("> **Error: this report is incomplete.**") and "KeyError: 'target 7'" in lines[2]
    assert "**Examples could not be rendered:** `KeyError: 'target 7'`" in lines
    assert "| pre-trained (2D supervision only) | 50.0 | 25.0 | 8 |" in lines  # the numbers are still there
    assert not list(tmp_path.glob("*.tmp"))
