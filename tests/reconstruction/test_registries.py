"""One registry per kind: methods, recognizers, backbones, engines; everything that offers a
choice of one of them derives it from its registry."""

import argparse

import pytest
from django.core.management import load_command_class

from analysis import columns
from reconstruction.methods import METHODS, PARAMETRIC
from reconstruction.metric1.engines import ENGINES
from reconstruction.recognizers.backbones import BACKBONES
from reconstruction.recognizers.registry import RECOGNIZERS, get_recognizer
from survey.models import FvrMethod


def test_the_survey_s_method_choices_are_the_methods_registry() -> None:
    assert set(FvrMethod.values) == set(METHODS)


def test_the_analysis_method_columns_are_the_methods_registry() -> None:
    # analysis.columns is torch- and Django-free, so it lists the names; this keeps them equal
    assert list(columns.METHODS) == list(FvrMethod.values)
    assert set(columns.METHODS) == set(METHODS)


def test_parametric_methods_are_registered_methods() -> None:
    assert set(METHODS) >= PARAMETRIC


def test_every_backbone_is_a_recognizer_that_asks_for_its_weights() -> None:
    assert BACKBONES
    for name in BACKBONES:
        with pytest.raises(KeyError, match="needs a weights file"):
            get_recognizer(name)
    assert not set(BACKBONES) & set(RECOGNIZERS)  # fixed-weight recognizers are apart


def _choices(command: str, option: str) -> list[str]:
    parser = load_command_class("reconstruction", command).create_parser("manage.py", command)
    actions = [a for a in parser._actions if option in a.option_strings]
    assert len(actions) == 1
    assert isinstance(actions[0], argparse.Action)
    return list(actions[0].choices or [])


@pytest.mark.parametrize(
    ("command", "option", "registry"),
    [
        ("reconstruct", "--method", METHODS),
        ("reconstruct", "--recognizer", RECOGNIZERS),
        ("train_reconstructor", "--method", PARAMETRIC),
        ("train_reconstructor", "--recognizer", RECOGNIZERS),
        ("train_extractor", "--backbone", BACKBONES),
        ("evaluate_topk", "--recognizer", RECOGNIZERS),
    ],
)
def test_command_choices_come_from_the_registry(command: str, option: str, registry) -> None:
    assert sorted(_choices(command, option)) == sorted(registry)


def test_engines_are_named_apart_from_local_recognizers() -> None:
    assert ENGINES
    assert not set(ENGINES) & set(RECOGNIZERS)
