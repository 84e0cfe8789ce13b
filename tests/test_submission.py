"""The packager's validation (table-driven), and refusing to write anything when a run is bad."""

from __future__ import annotations

import pytest

from mediaeval_mem.submission import Prediction, validate_predictions

IDS = ["1", "2", "3"]
P = lambda *pairs: [Prediction(v, x) for v, x in pairs]


@pytest.mark.parametrize(
    "preds,expected",
    [
        (P(("1", "0.5"), ("2", "0.7"), ("3", "0.1")), []),
        (P(("1", "0"), ("2", "1"), ("3", "1.0")), []),  # the bounds are allowed
        (P(("1", "0.5"), ("2", "0.7")), ["1 test videos missing: 3"]),
        (P(("1", "0.5"), ("2", "0.7"), ("3", "0.1"), ("9", "0.2")), ["1 unknown ids (not in the test split): 9"]),
        (P(("1", "0.5"), ("2", "0.7"), ("3", "0.1"), ("2", "0.2")), ["1 ids given more than once: 2"]),
        (P(("1", "nan"), ("2", "0.7"), ("3", "0.1")), ["1 values not a finite number: 1=nan"]),
        (P(("1", "inf"), ("2", ""), ("3", "0.1")), ["2 values not a finite number: 1=inf, 2=''"]),
        (P(("1", "1.2"), ("2", "-0.1"), ("3", "0.1")), ["2 values outside [0, 1]: 1=1.2, 2=-0.1"]),
        (P(("1", "1.2"), ("4", "0.5")), ["2 test videos missing: 2, 3", "1 unknown ids (not in the test split): 4",
                                         "1 values outside [0, 1]: 1=1.2"]),
    ],
)
def test_validation(preds, expected):
    assert validate_predictions(preds, IDS) == expected


def test_long_id_lists_are_cut():
    problems = validate_predictions([], [str(i) for i in range(25)])
    assert problems == ["25 test videos missing: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 15 more"]
