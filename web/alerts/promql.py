"""The PromQL the alert rules use, evaluated over a ``History``: Prometheus's semantics, a subset.

Why our own evaluator: no maintained Python library evaluates PromQL (docs/alerts.md). Parsing is
not ours: ``promql_parser`` (Python bindings of the Rust parser GreptimeDB uses) turns a rule's
text into the syntax tree; this module walks it. What it covers is what ``configs/prometheus``
uses: selectors with label matchers and ``offset``, ``rate``/``increase`` (extrapolated exactly as
Prometheus 2 does), ``histogram_quantile``, ``vector``, ``clamp_min``/``clamp_max``,
``hour``/``day_of_week``/``time``, ``sum``/``count``/``min``/``max``/``avg`` by or without
labels, arithmetic and comparisons (with ``bool``), ``and``/``or``/``unless``, one-to-one
matching with ``on``/``ignoring``. Anything else raises ``Unsupported`` at its node, so a rule
that needs more fails its test (``tests/web/test_alerts.py``) rather than never firing; and
``tests/web/test_alerts.py`` replays ``alerts_test.yml`` to agree with promtool on what fires.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import promql_parser as pq

from web.alerts.history import LOOKBACK_S, STALE, History, Labels, Point

NAME = "__name__"


class Unsupported(ValueError):
    """A construct this evaluator does not implement (the message names it)."""


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float

    def without(self, *names: str) -> Labels:
        return tuple(item for item in self.labels if item[0] not in names)


Vector = list[Sample]
Value = Vector | float

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda a, b: a / b if b else (math.copysign(math.inf, a) * math.copysign(1, b) if a else math.nan),
}
_COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_SET = ("and", "or", "unless")
_AGGREGATIONS = {
    "sum": sum,
    "count": len,
    "min": min,
    "max": max,
    "avg": lambda values: sum(values) / len(values),
}


def parse(text: str) -> Any:
    """The syntax tree of ``text``; ``Unsupported`` if something in it is not evaluated here."""
    try:
        tree = pq.parse(text)
    except ValueError as exc:
        raise Unsupported(f"not PromQL: {exc}") from exc
    evaluate(tree, 0.0, History())  # every node is visited on any data: unknown ones raise now
    return tree


def evaluate(node: Any, at: float, history: History) -> Value:
    """The value of ``node`` at time ``at`` (seconds) over ``history``."""
    if isinstance(node, pq.NumberLiteral):
        return float(node.val)
    if isinstance(node, pq.ParenExpr):
        return evaluate(node.expr, at, history)
    if isinstance(node, pq.UnaryExpr):
        inner = evaluate(node.expr, at, history)
        return -inner if isinstance(inner, float) else [Sample(s.without(NAME), -s.value) for s in inner]
    if isinstance(node, pq.VectorSelector):
        return _instant(node, at, history)
    if isinstance(node, pq.Call):
        return _call(node, at, history)
    if isinstance(node, pq.AggregateExpr):
        return _aggregate(node, at, history)
    if isinstance(node, pq.BinaryExpr):
        return _binary(node, at, history)
    raise Unsupported(f"{type(node).__name__} ({node})")


# --- selectors ---------------------------------------------------------------------------------


def _matches(node: Any) -> Callable[[Labels], bool]:
    if node.at is not None:
        raise Unsupported("the @ modifier")
    if node.matchers.or_matchers:
        raise Unsupported("'or' between label matchers")
    tests: list[Callable[[dict[str, str]], bool]] = []
    for matcher in node.matchers.matchers:
        name, value, op = matcher.name, matcher.value, str(matcher.op)
        if op.endswith("NotEqual"):
            tests.append(lambda labels, n=name, v=value: labels.get(n, "") != v)
        elif op.endswith("Equal"):
            tests.append(lambda labels, n=name, v=value: labels.get(n, "") == v)
        elif op.endswith("NotRe"):
            pattern = re.compile(value)
            tests.append(lambda labels, n=name, p=pattern: not p.fullmatch(labels.get(n, "")))
        else:
            pattern = re.compile(value)
            tests.append(lambda labels, n=name, p=pattern: bool(p.fullmatch(labels.get(n, ""))))
    return lambda labels: all(test(dict(labels)) for test in tests)


def _offset(node: Any) -> float:
    return node.offset.total_seconds() if node.offset is not None else 0.0


def _instant(node: Any, at: float, history: History) -> Vector:
    at -= _offset(node)
    wanted = _matches(node)
    out: Vector = []
    for labels, points in history.series(node.name):
        if not wanted(labels):
            continue
        latest = [p for p in points if at - LOOKBACK_S <= p.t <= at]
        if latest and latest[-1].value is not STALE:
            out.append(Sample(labels, latest[-1].value))
    return out


def _range(node: Any, at: float, history: History) -> list[tuple[Labels, list[Point]]]:
    if not isinstance(node, pq.MatrixSelector):
        raise Unsupported(f"a range over {type(node).__name__} (subqueries)")
    selector = node.vector_selector
    end = at - _offset(selector)
    start = end - node.range.total_seconds()
    wanted = _matches(selector)
    out = []
    for labels, points in history.series(selector.name):
        if wanted(labels):
            window = [p for p in points if start <= p.t <= end and p.value is not STALE]
            out.append((labels, window))
    return out


# --- functions ---------------------------------------------------------------------------------


def _extrapolated(points: list[Point], start: float, end: float, range_s: float, per_second: bool) -> float:
    """Prometheus 2's ``extrapolatedRate`` for a counter (resets included)."""
    first, last = points[0], points[-1]
    assert first.value is not None and last.value is not None
    result = last.value - first.value
    previous = 0.0
    for point in points:
        assert point.value is not None
        if point.value < previous:
            result += previous  # a counter reset
        previous = point.value
    to_start, to_end = first.t - start, end - last.t
    sampled = last.t - first.t
    average_step = sampled / (len(points) - 1)
    if result > 0 and first.value >= 0:
        to_zero = sampled * (first.value / result)
        to_start = min(to_start, to_zero)
    threshold = average_step * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average_step / 2
    interval += to_end if to_end < threshold else average_step / 2
    result *= interval / sampled
    return result / range_s if per_second else result


def _rate(node: Any, at: float, history: History, per_second: bool) -> Vector:
    [matrix] = node.args
    out: Vector = []
    range_s = matrix.range.total_seconds() if isinstance(matrix, pq.MatrixSelector) else 0.0
    end = at - (_offset(matrix.vector_selector) if isinstance(matrix, pq.MatrixSelector) else 0.0)
    for labels, points in _range(matrix, at, history):
        if len(points) >= 2:
            value = _extrapolated(points, end - range_s, end, range_s, per_second)
            out.append(Sample(Sample(labels, 0).without(NAME), value))
    return out


def _bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``bucketQuantile`` over (upper bound, cumulative count) pairs."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if not buckets or not math.isinf(buckets[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in buckets:  # the same bound twice: counts added
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    for i in range(1, len(merged)):  # counts that went down (scrapes of a moving histogram)
        merged[i][1] = max(merged[i][1], merged[i - 1][1])
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def _histogram_quantile(node: Any, at: float, history: History) -> Vector:
    q, vector = (evaluate(arg, at, history) for arg in node.args)
    if not isinstance(q, float) or isinstance(vector, float):
        raise Unsupported("histogram_quantile(scalar, vector) with other argument types")
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for sample in vector:
        le = dict(sample.labels).get("le")
        if le is None:
            continue
        groups.setdefault(sample.without(NAME, "le"), []).append((float(le), sample.value))
    return [Sample(labels, _bucket_quantile(q, buckets)) for labels, buckets in groups.items()]


def _clock(node: Any, at: float, history: History, read: Callable[[datetime], float]) -> Vector:
    if not node.args:
        moments = [Sample((), at)]
    else:
        [arg] = node.args
        value = evaluate(arg, at, history)
        if isinstance(value, float):
            raise Unsupported(f"{node.func.name} of a scalar")
        moments = [Sample(s.without(NAME), s.value) for s in value]
    return [Sample(s.labels, read(datetime.fromtimestamp(s.value, UTC))) for s in moments]


def _clamp(node: Any, at: float, history: History, bound: Callable[[float, float], float]) -> Vector:
    vector, limit = (evaluate(arg, at, history) for arg in node.args)
    if isinstance(vector, float) or not isinstance(limit, float):
        raise Unsupported(f"{node.func.name}(vector, scalar) with other argument types")
    return [Sample(s.without(NAME), bound(s.value, limit)) for s in vector]


def _call(node: Any, at: float, history: History) -> Value:
    name = node.func.name
    if name in ("rate", "increase"):
        return _rate(node, at, history, per_second=name == "rate")
    if name == "histogram_quantile":
        return _histogram_quantile(node, at, history)
    if name == "vector":
        [arg] = node.args
        value = evaluate(arg, at, history)
        if not isinstance(value, float):
            raise Unsupported("vector() of a vector")
        return [Sample((), value)]
    if name == "time":
        return at
    if name == "clamp_min":
        return _clamp(node, at, history, max)
    if name == "clamp_max":
        return _clamp(node, at, history, min)
    if name == "hour":
        return _clock(node, at, history, lambda moment: float(moment.hour))
    if name == "day_of_week":
        return _clock(node, at, history, lambda moment: float(moment.isoweekday() % 7))  # Sunday 0
    raise Unsupported(f"the function {name}()")


# --- aggregation -------------------------------------------------------------------------------


def _aggregate(node: Any, at: float, history: History) -> Vector:
    op = str(node.op)
    if op not in _AGGREGATIONS or node.param is not None:
        raise Unsupported(f"the aggregation {op}")
    inner = evaluate(node.expr, at, history)
    if isinstance(inner, float):
        raise Unsupported(f"{op} of a scalar")
    modifier = node.modifier
    keep: Callable[[Sample], Labels]
    if modifier is None:
        keep = lambda _sample: ()  # noqa: E731
    elif str(modifier.type).endswith("By"):
        names = set(modifier.labels)
        keep = lambda sample: tuple(item for item in sample.labels if item[0] in names)  # noqa: E731
    else:
        dropped = {*modifier.labels, NAME}
        keep = lambda sample: sample.without(*dropped)  # noqa: E731
    groups: dict[Labels, list[float]] = {}
    for sample in inner:
        groups.setdefault(keep(sample), []).append(sample.value)
    return [Sample(labels, float(_AGGREGATIONS[op](values))) for labels, values in groups.items()]


# --- binary operators --------------------------------------------------------------------------


def _signature(sample: Sample, modifier: Any) -> Labels:
    matching = modifier.matching if modifier is not None else None
    if matching is None:
        return sample.without(NAME)
    if str(matching.type).endswith("Include"):  # on(...)
        names = set(matching.labels)
        return tuple(item for item in sample.labels if item[0] in names)
    return sample.without(NAME, *matching.labels)  # ignoring(...)


def _binary(node: Any, at: float, history: History) -> Value:
    op = str(node.op)
    modifier = node.modifier
    if op not in _ARITHMETIC and op not in _COMPARISON and op not in _SET:
        raise Unsupported(f"the operator {op}")
    if modifier is not None and (str(modifier.card).split(".")[-1] in ("ManyToOne", "OneToMany")):
        if op not in _SET:
            raise Unsupported("group_left/group_right")
    returns_bool = bool(modifier is not None and modifier.return_bool)
    lhs, rhs = evaluate(node.lhs, at, history), evaluate(node.rhs, at, history)
    if op in _SET:
        if isinstance(lhs, float) or isinstance(rhs, float):
            raise Unsupported(f"{op} with a scalar")
        right = {_signature(s, modifier) for s in rhs}
        if op == "and":
            return [s for s in lhs if _signature(s, modifier) in right]
        if op == "unless":
            return [s for s in lhs if _signature(s, modifier) not in right]
        left = {_signature(s, modifier) for s in lhs}
        return lhs + [s for s in rhs if _signature(s, modifier) not in left]
    if isinstance(lhs, float) and isinstance(rhs, float):
        if op in _ARITHMETIC:
            return _ARITHMETIC[op](lhs, rhs)
        return float(_COMPARISON[op](lhs, rhs))
    if isinstance(lhs, float) or isinstance(rhs, float):
        return _vector_scalar(op, lhs, rhs, returns_bool)
    return _vector_vector(op, lhs, rhs, modifier, returns_bool)


def _vector_scalar(op: str, lhs: Value, rhs: Value, returns_bool: bool) -> Vector:
    vector_first = isinstance(rhs, float)
    vector, scalar = (lhs, rhs) if vector_first else (rhs, lhs)
    assert isinstance(vector, list) and isinstance(scalar, float)
    out: Vector = []
    for sample in vector:
        a, b = (sample.value, scalar) if vector_first else (scalar, sample.value)
        if op in _ARITHMETIC:
            out.append(Sample(sample.without(NAME), _ARITHMETIC[op](a, b)))
        elif returns_bool:
            out.append(Sample(sample.without(NAME), float(_COMPARISON[op](a, b))))
        elif _COMPARISON[op](a, b):
            out.append(sample)  # a filter keeps the vector's sample as it is
    return out


def _vector_vector(op: str, lhs: Vector, rhs: Vector, modifier: Any, returns_bool: bool) -> Vector:
    right: dict[Labels, Sample] = {}
    for sample in rhs:
        signature = _signature(sample, modifier)
        if signature in right:
            raise Unsupported(f"many-to-many matching on {op} (duplicate series on the right)")
        right[signature] = sample
    matching = modifier.matching if modifier is not None else None
    out: Vector = []
    for sample in lhs:
        signature = _signature(sample, modifier)
        other = right.get(signature)
        if other is None:
            continue
        labels = sample.labels if op in _COMPARISON and not returns_bool else sample.without(NAME)
        if matching is not None and str(matching.type).endswith("Include"):
            labels = tuple(item for item in labels if item[0] in set(matching.labels))
        elif matching is not None:
            labels = tuple(item for item in labels if item[0] not in set(matching.labels))
        if op in _ARITHMETIC:
            out.append(Sample(labels, _ARITHMETIC[op](sample.value, other.value)))
        elif returns_bool:
            out.append(Sample(labels, float(_COMPARISON[op](sample.value, other.value))))
        elif _COMPARISON[op](sample.value, other.value):
            out.append(Sample(labels, sample.value))
    return out
