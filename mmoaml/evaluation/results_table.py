"""The results table of a multi-set evaluation: one row per set, accuracy and TAR@FAR columns."""
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ['format_results_table']

_MEAN = 'mean'
_ACCURACY = 'accuracy'
_TAR_PREFIX = 'tar@far='


def format_results_table(metrics: Mapping[str, float], digits: int = 2) -> str:
    """Format verification metrics as a Markdown table, values in percent.

    Reads the key scheme of :class:`mmoaml.evaluation.FaceVerificationMetric` under the
    multi-set loops: ``<set>/<score type>/accuracy`` and ``<set>/<score type>/tar@far=<f>``
    (and ``<set>/num_pairs`` when present). Rows are the sets in the order their keys first
    appear (the loops' evaluation order); columns are, per score type in order of appearance,
    the accuracy followed by each TAR@FAR. The last row, ``mean``, is the plain mean over the
    sets of each column that every set reports (for accuracy the same number as the loops'
    ``mean/<score>/accuracy``); other keys, including the loops' own ``mean/...``, are ignored.

    Args:
        metrics (Mapping[str, float]): Metric name -> value (fractions in ``[0, 1]``).
        digits (int): Decimals of the percentages. Defaults to 2.

    Returns:
        str: The table, one line per row, without a trailing newline.

    Examples:
        >>> print(format_results_table({
        ...     'lfw/num_pairs': 6000, 'lfw/adaface/accuracy': 0.9945,
        ...     'lfw/adaface/tar@far=0.001': 0.98,
        ...     'cfp_fp/num_pairs': 7000, 'cfp_fp/adaface/accuracy': 0.9531,
        ...     'cfp_fp/adaface/tar@far=0.001': 0.85}))
        | set    | pairs | adaface acc | adaface TAR@FAR=0.001 |
        |--------|-------|-------------|-----------------------|
        | lfw    | 6000  | 99.45       | 98.00                 |
        | cfp_fp | 7000  | 95.31       | 85.00                 |
        | mean   |       | 97.38       | 91.50                 |
    """
    sets, columns, values = _collect(metrics)
    if not sets:
        raise ValueError('format_results_table: no "<set>/<score type>/accuracy" or '
                         '"<set>/<score type>/tar@far=<f>" keys among '
                         f'{sorted(metrics)[:10]}')
    show_pairs = any(f'{name}/num_pairs' in metrics for name in sets)
    header = ['set'] + (['pairs'] if show_pairs else []) + [_column_title(c) for c in columns]
    rows = []
    for name in sets:
        row = [name]
        if show_pairs:
            pairs = metrics.get(f'{name}/num_pairs')
            row.append('-' if pairs is None else str(int(pairs)))
        row += [_percent(values.get((name, column)), digits) for column in columns]
        rows.append(row)
    mean_row = [_MEAN] + ([''] if show_pairs else [])
    for column in columns:
        per_set = [values.get((name, column)) for name in sets]
        mean = None if None in per_set else sum(per_set) / len(per_set)
        mean_row.append(_percent(mean, digits))
    rows.append(mean_row)
    return _markdown([header] + rows)


def _collect(metrics: Mapping[str, float]
             ) -> Tuple[List[str], List[Tuple[str, str]], Dict[Tuple[str, Tuple[str, str]], float]]:
    """Sets, ``(score type, metric)`` columns and the values of the table's keys."""
    sets: List[str] = []
    scores: List[str] = []
    names_per_score: Dict[str, List[str]] = {}
    values: Dict[Tuple[str, Tuple[str, str]], float] = {}
    for key, value in metrics.items():
        parts = key.split('/')
        if len(parts) != 3 or parts[0] == _MEAN:
            continue
        name, score, metric = parts
        if metric != _ACCURACY and not metric.startswith(_TAR_PREFIX):
            continue
        if name not in sets:
            sets.append(name)
        if score not in scores:
            scores.append(score)
        seen = names_per_score.setdefault(score, [])
        if metric not in seen:
            seen.append(metric)
        values[(name, (score, metric))] = float(value)
    columns = []
    for score in scores:
        # Accuracy first, then the TAR@FAR points in the order the metric reports them.
        ordered = sorted(names_per_score[score], key=lambda m: m != _ACCURACY)
        columns += [(score, metric) for metric in ordered]
    return sets, columns, values


def _column_title(column: Tuple[str, str]) -> str:
    score, metric = column
    if metric == _ACCURACY:
        return f'{score} acc'
    return f'{score} TAR@FAR={metric[len(_TAR_PREFIX):]}'


def _percent(value: Optional[float], digits: int) -> str:
    if value is None:
        return '-'
    if math.isnan(value):
        return 'nan'
    return f'{100 * value:.{digits}f}'


def _markdown(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        return '| ' + ' | '.join(c.ljust(w) for c, w in zip(cells, widths)) + ' |'

    rule = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return '\n'.join([line(rows[0]), rule] + [line(row) for row in rows[1:]])
