"""What every connector kind does with a department's answer once it has one. Pure.

Reading the result code and the data out of an envelope, checking that the department
answered about the subject asked for, mapping rows to canonical records (gateway.catalogue
mapping) and working out the as-of time. Each failure is a typed department error naming
the department and the rule, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.catalogue import converters
from gateway.catalogue.mapping import map_record
from gateway.catalogue.schema import AsOfSpec, EvidenceType
from gateway.domain.errors import DepartmentMalformed, DepartmentUnavailable, RecordNotFound

_MISSING = object()


def dig(data: Any, path: str) -> Any:
    """`data` at a dotted path ("" is `data` itself); `_MISSING` where the path breaks."""
    if not path:
        return data
    for key in path.split("."):
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        else:
            return _MISSING
    return data


def result(
    envelope: Any,
    *,
    department: str,
    result_field: str,
    success: Sequence[str],
    not_found: Sequence[str],
    data: str,
) -> Any:
    """The data of a successful answer; RecordNotFound or DepartmentUnavailable otherwise."""
    if result_field:
        code = dig(envelope, result_field)
        if code is _MISSING or isinstance(code, bool) or not isinstance(code, str | int):
            raise DepartmentMalformed(f"{department}: answer lacks {result_field}")
        text = str(code).strip()
        if text in not_found:
            raise RecordNotFound(f"{department}: no such subject")
        if success and text not in success:
            raise DepartmentUnavailable(f"{department}: answered code {text[:8]}")
    found = dig(envelope, data)
    if found is _MISSING:
        raise DepartmentMalformed(f"{department}: answer lacks {data}")
    return found


def check_subject(evidence: EvidenceType, row: Mapping[str, Any], subject: str) -> None:
    """The department's echo of the subject must be the subject asked about."""
    if not evidence.subject_field:
        return
    echoed = row.get(evidence.subject_field)
    if not isinstance(echoed, str) or echoed.strip().upper() != subject.upper():
        raise DepartmentMalformed(f"{evidence.department}: answered for a different subject")


def _when(spec: AsOfSpec, row: Mapping[str, Any], department: str) -> datetime | None:
    for key in spec.sources:
        value = row.get(key)
        if converters.is_empty(value):
            continue
        convert = converters.beijing_time if spec.convert == "beijing_time" else None
        try:
            if spec.convert == "epoch_ms":
                return converters.epoch_ms(value)
            if spec.convert == "date":
                day = converters.any_date(value)
                return datetime.fromisoformat(day).replace(tzinfo=converters.CHINA_TZ)
            assert convert is not None
            return convert(value)
        except converters.FAILURES:
            raise DepartmentMalformed(f"{department}: field {key} is unreadable") from None
    return None


def as_of(
    spec: AsOfSpec,
    rows: Sequence[Mapping[str, Any]],
    envelope: Any,
    department: str,
    now: datetime | None = None,
) -> datetime:
    """When the department says the record was current: the latest of the rows' own times,
    else the envelope's epoch-milliseconds field, else the time of the answer."""
    times = [t for row in rows if (t := _when(spec, row, department)) is not None]
    if times:
        return max(times)
    if spec.envelope:
        stamp = dig(envelope, spec.envelope)
        if stamp is not _MISSING:
            try:
                return converters.epoch_ms(stamp)
            except (converters.Unreadable, OverflowError, OSError, ValueError):
                raise DepartmentMalformed(f"{department}: timestamp is unreadable") from None
    return now or datetime.now(UTC)


def records(evidence: EvidenceType, data: Any, subject: str, envelope: Any) -> tuple[Any, datetime]:
    """The canonical record (cardinality one) or records (many) and their as-of time."""
    what = evidence.department
    if evidence.cardinality == "one":
        if not isinstance(data, Mapping):
            raise DepartmentMalformed(f"{what}: data is not an object")
        check_subject(evidence, data, subject)
        return map_record(evidence.record, data, what), as_of(
            evidence.as_of, [data], envelope, what
        )
    rows = [] if data is None else data
    if not isinstance(rows, list):
        raise DepartmentMalformed(f"{what}: data is not a list")
    for row in rows:
        if isinstance(row, Mapping):
            check_subject(evidence, row, subject)
    mapped = [map_record(evidence.record, row, what) for row in rows]
    return mapped, as_of(
        evidence.as_of, [r for r in rows if isinstance(r, Mapping)], envelope, what
    )
