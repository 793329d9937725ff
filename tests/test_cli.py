"""The `seqlab` command: the demo job trains and its loss falls; bad arguments are refused."""

from __future__ import annotations

import pytest

from seqlab.cli import main


def test_demo_loss_falls(capsys: pytest.CaptureFixture[str]) -> None:
    from seqlab.recipes.demo import sequence_demo

    result = sequence_demo(epochs=3, hidden=16, samples=256, length=20, verbose=False)
    assert len(result.val_loss) == 3
    assert result.val_loss[-1] < 0.7 * result.val_loss[0]


def test_demo_command_prints_progress(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--epochs", "1", "--hidden", "8"]) == 0
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "val mse" in out


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--epochs", "0"])
    assert "expected a positive integer" in capsys.readouterr().err


def test_same_seed_same_run() -> None:
    from seqlab.recipes.demo import sequence_demo

    a = sequence_demo(epochs=1, hidden=8, samples=128, length=10, seed=3, verbose=False)
    b = sequence_demo(epochs=1, hidden=8, samples=128, length=10, seed=3, verbose=False)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    for (na, pa), (nb, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert na == nb
        assert (pa.data == pb.data).all()


def test_every_option_has_help_text() -> None:
    import argparse

    from seqlab.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = {None: parser, **subparsers.choices}
    for name, command in commands.items():
        assert name is None or any(c.dest == name and c.help for c in subparsers._choices_actions), name
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(c.help for c in action._choices_actions)
                continue
            where = f"{name}: {action.option_strings or action.dest}"
            assert action.help and action.help != argparse.SUPPRESS, where


def test_demo_help_says_what_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "check that the install works" in capsys.readouterr().out


def test_demo_result_repr_is_one_line() -> None:
    from seqlab.recipes.demo import sequence_demo

    result = sequence_demo(epochs=2, hidden=8, samples=64, verbose=False)
    text = repr(result)
    assert "\n" not in text and text.startswith("DemoResult(") and "2 epochs, val loss" in text
