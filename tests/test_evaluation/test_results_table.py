"""format_results_table: rows per set in key order, accuracy + TAR@FAR columns, mean row."""
import math

import pytest

from mmoaml.evaluation import format_results_table


def _rows(table):
    return [[c.strip() for c in line.strip('|').split('|')] for line in table.splitlines()]


def test_known_table_with_mean_row_and_ignored_keys():
    metrics = {
        'lfw/num_pairs': 6000,
        'lfw/num_impostors': 3000,
        'lfw/adaface/accuracy': 0.995,
        'lfw/adaface/accuracy_std': 0.003,
        'lfw/adaface/tar@far=0.001': 0.98,
        'lfw/adaface/auc': 0.999,
        'lfw/qaconv/accuracy': 0.99,
        'lfw/qaconv/tar@far=0.001': 0.95,
        'lfw_mask/num_pairs': 6000,
        'lfw_mask/adaface/accuracy': 0.9,
        'lfw_mask/adaface/tar@far=0.001': 0.5,
        'lfw_mask/qaconv/accuracy': 0.93,
        'lfw_mask/qaconv/tar@far=0.001': 0.625,
        'mean/adaface/accuracy': 0.0,  # the table computes its own mean row
        'lfw/rank1': 0.7,  # not a <set>/<score>/<metric> key
    }
    expected = '\n'.join([
        '| set      | pairs | adaface acc | adaface TAR@FAR=0.001 | qaconv acc | '
        'qaconv TAR@FAR=0.001 |',
        '|----------|-------|-------------|-----------------------|------------|'
        '----------------------|',
        '| lfw      | 6000  | 99.50       | 98.00                 | 99.00      | '
        '95.00                |',
        '| lfw_mask | 6000  | 90.00       | 50.00                 | 93.00      | '
        '62.50                |',
        '| mean     |       | 94.75       | 74.00                 | 96.00      | '
        '78.75                |',
    ])
    assert format_results_table(metrics) == expected


def test_accuracy_precedes_tar_whatever_the_key_order_and_missing_cells_show_dash():
    metrics = {
        'b/qaconv/tar@far=0.01': 0.5,
        'b/qaconv/tar@far=0.001': 0.25,
        'b/qaconv/accuracy': 0.75,
        'a/qaconv/accuracy': 0.8,
        'a/adaface/accuracy': 0.6,
    }
    rows = _rows(format_results_table(metrics, digits=1))
    assert rows[0] == ['set', 'qaconv acc', 'qaconv TAR@FAR=0.01', 'qaconv TAR@FAR=0.001',
                       'adaface acc']
    assert rows[2] == ['b', '75.0', '50.0', '25.0', '-']
    assert rows[3] == ['a', '80.0', '-', '-', '60.0']
    # A column's mean needs every set: (75 + 80) / 2 for qaconv accuracy only.
    assert rows[4] == ['mean', '77.5', '-', '-', '-']


def test_nan_values_are_shown_and_propagate_to_the_mean():
    rows = _rows(format_results_table({'a/x/accuracy': math.nan, 'b/x/accuracy': 0.5}))
    assert [r[-1] for r in rows[2:]] == ['nan', '50.00', 'nan']


def test_no_verification_keys_is_an_error():
    with pytest.raises(ValueError, match='no "<set>/<score type>/accuracy"'):
        format_results_table({'mean/adaface/accuracy': 0.9, 'lfw/num_pairs': 10})
