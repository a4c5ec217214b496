"""`python -m bench.cel [--quick] [--rounds N] [--output FILE]`: which CEL library evaluates
the claim rules.

The five claim rules of today's flagship types (household.residence, household.kinship,
social_security.contribution, property.ownership, property.encumbrance), as the deployed
catalogue (deploy/catalogue) writes them, over activations built the way the gateway builds
them: the department simulators' answers for the bench population mapped through the
catalogue (the household and social security payloads; the property front-end database's
view read with the catalogue's own SQL), parameters read by `parse_claim`, `today` the
simulators' reference date. The candidates:

    compiled         gateway.catalogue.rules: type-checked by cel-cpp, compiled to a Python
                     closure over the canonical records (what the gateway runs)
    cel-expr-python  Google's cel-cpp: the same checked expression, evaluated by cel-cpp over
                     protobuf messages of the declared schema
    cel-rust         PyPI `common-expression-language`: bindings to the Rust `cel` crate;
                     Python dicts in, no type checker
    cel-python       PyPI `cel-python` (celpy): pure Python, no type checker; its interpreter
                     and its transpiler (`CompiledRunner`) are two rows

The third and fourth are the `bench` extra (`pip install -e '.[bench]'`, which `make bench`
does); one that is not installed is skipped with a note. The domain functions
(gateway.catalogue.functions) are registered in each library. Before anything is timed each
candidate's answer is compared with the compiled rule's on every activation. Then, per rule:
µs per evaluation over the library's own values ("eval") and per call from the canonical
records the connectors produce ("call": converting them to the library's values, filling the
defaults a missing optional field reads as, then evaluating); candidates interleaved, forward
then reverse, median of the rounds; and the contribution rule over a quarter, half and all of
the longest history (linear in the rows, or not). CPU time of this process (`process_time`),
so neighbours on the machine blur the figures less. Load: ms to compile (and, where the
library can, type-check) one rule. Catalogue errors: a few wrong rules each library is given
at load; whether it refuses them there, or what the first call then does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from google.protobuf import message_factory

from adapters.connectors.common import records
from adapters.simulators import property_db
from adapters.simulators import social_security as ss_sim
from adapters.simulators.datagen import Population, generate
from adapters.simulators.population import REFERENCE_DATE
from bench.servers import bench_catalogue, household_records
from bench.setup import POPULATION, SEED
from gateway.catalogue import Catalogue, functions, rules
from gateway.catalogue.claims import parse_claim
from gateway.catalogue.rules import RuleType
from gateway.catalogue.schema import SqlQuery

CLAIMS = (
    "household.residence",
    "household.kinship",
    "social_security.contribution",
    "property.ownership",
    "property.encumbrance",
)
TODAY = REFERENCE_DATE

# Rules with a catalogue error, over the household evidence and the residence claim's
# parameters: each must be refused when the catalogue loads, not at the first call.
PROBES = {
    "unknown field": 'record.stauts == "active"',
    "undeclared parameter": 'record.status == "active" && params.regoin == ""',
    "string compared with int": "record.status == 1",
    "unknown function": "region_contain(params.region, record.region_code)",
    "wrong argument type": "region_contains(params.region, 350505)",
    "not a bool": "record.region_code",
}


# ---- the activations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    claim: str
    activation: Mapping[str, Any]  # canonical records, as claims._activation builds it
    expected: bool = False  # the compiled rule's answer


def _rule_params(catalogue: Catalogue, code: str, raw: Mapping[str, str], applicant: str) -> Any:
    parsed, violations = parse_claim(0, "c", code, raw, catalogue, applicant=applicant, today=TODAY)
    assert parsed is not None, violations
    return parsed.rule_params()


def _base(
    catalogue: Catalogue, code: str, raw: Mapping[str, str], applicant: str
) -> dict[str, Any]:
    return {
        "params": _rule_params(catalogue, code, raw, applicant),
        "today": TODAY.isoformat(),
        "this_month": f"{TODAY.year:04d}-{TODAY.month:02d}",
    }


def _property_records(population: Population, catalogue: Catalogue) -> dict[str, list[Any]]:
    """Each owner's canonical property records: the simulated front-end database (its own
    tables and view, in memory), read with the catalogue's query and mapped by it."""
    evidence = catalogue.evidence["property"]
    assert isinstance(evidence.fetch, SqlQuery)
    query = evidence.fetch.query
    units, owners = property_db.table_rows(population)
    conn = sqlite3.connect(":memory:")
    try:
        for ddl in (*property_db.TABLES, property_db.VIEW):
            conn.execute(ddl)
        conn.executemany(property_db.INSERT_FW, [(*u[:4], str(u[4]), *u[5:]) for u in units])
        conn.executemany(property_db.INSERT_QLR, owners)
        out: dict[str, list[Any]] = {}
        for idn in sorted({o[4] for o in owners}):
            cursor = conn.execute(query, (idn,))
            names = [d[0].upper() for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            out[idn] = records(evidence, rows, idn, None)[0]
    finally:
        conn.close()
    return out


def _social_security_record(population: Population, catalogue: Catalogue, idn: str) -> Any:
    """The person and every page of the history, as the http_json connector assembles them."""
    account = population.social_security[idn]
    data = ss_sim.person_payload(account)
    months = len(account.months())
    data["contributions"] = ss_sim.history_page(account, 1, max(1, months))["list"]
    return records(catalogue.evidence["social_security"], data, idn, data)[0]


def build_cases(catalogue: Catalogue) -> dict[str, list[Case]]:
    """Realistic activations for each claim: the scenario people of the simulators (a long
    contribution history, several properties, a mortgage, a seizure, a moved-out person…) and
    the first people of the population, with parameters that make the rule hold and fail."""
    population = generate(seed=SEED, size=POPULATION)
    scen = population.scenarios
    people = sorted(population.people)
    many = 8
    cases: dict[str, list[Case]] = {code: [] for code in CLAIMS}
    household = household_records()

    # household.residence
    chosen = [scen[k] for k in ("household_head", "household_child", "moved_out", "deceased")]
    chosen += [p for p in people if p not in chosen][:many]
    for idn in chosen:
        record = household[idn][0]
        for region in (record["region_code"], record["region_code"][:2] + "0000", "110000"):
            act = _base(catalogue, "household.residence", {"region": region}, idn)
            act["record"] = record
            cases["household.residence"].append(Case("household.residence", act))

    # household.kinship: pairs of one household, the relation the registry implies and another
    pairs: list[tuple[str, str]] = []
    for number in sorted(population.households):
        members = population.households[number].member_ids
        pairs += [(a, b) for a in members for b in members if a != b][:2]
        if len(pairs) >= 2 * many:
            break
    for applicant, other in pairs:
        record, other_record = household[applicant][0], household[other][0]
        implied = functions.kin_relation(
            record["relation_to_head"], other_record["relation_to_head"]
        )
        for relation in dict.fromkeys((implied or "spouse", "grandparent")):
            raw = {"other_id_number": other, "relation": relation}
            act = _base(catalogue, "household.kinship", raw, applicant)
            act["record"], act["other"] = record, other_record
            cases["household.kinship"].append(Case("household.kinship", act))

    # social_security.contribution: ~300 months of 4-5 insurances each, ~1,400 history rows
    chosen = [
        scen[k]
        for k in ("long_contributor", "insured", "pensioner_quangang", "broken_contributions")
    ]
    params = (
        {"min_months": "12"},
        {"min_months": "120", "from": "2016-01", "to": "2025-12", "region": "350500"},
        {"min_months": "360", "type": "medical"},
    )
    for idn in chosen:
        record = _social_security_record(population, catalogue, idn)
        for raw in params:
            act = _base(catalogue, "social_security.contribution", raw, idn)
            act["record"] = record
            cases["social_security.contribution"].append(Case("social_security.contribution", act))

    # property.ownership and property.encumbrance
    owned = _property_records(population, catalogue)
    chosen = [
        scen[k]
        for k in ("several_properties", "mortgaged_property", "seized_property", "no_property")
    ]
    chosen += [p for p in owned if p not in chosen][:many]
    for idn in chosen:
        props = owned.get(idn, [])  # a register that does not know the subject: no records
        for raw in ({}, {"region": "350500"}, {"region": "350100", "owns": "false"}):
            act = _base(catalogue, "property.ownership", raw, idn)
            act["records"] = props
            cases["property.ownership"].append(Case("property.ownership", act))
        for prop in props[:2]:
            for kind in ("any", "mortgage", "seizure"):
                raw = {"certificate_number": prop["certificate_number"], "kind": kind}
                act = _base(catalogue, "property.encumbrance", raw, idn)
                act["records"] = props
                cases["property.encumbrance"].append(Case("property.encumbrance", act))
    return cases


# ---- the candidates ----------------------------------------------------------------------


@dataclass
class Loaded:
    """A rule loaded by one library: its program, and how a canonical activation becomes the
    library's input."""

    program: Any
    convert: Callable[[Mapping[str, Any]], Any]


@dataclass
class Candidate:
    name: str
    distribution: str
    checks: str  # what the library checks at load
    registers: str  # how the domain functions are registered
    load: Callable[[str, Mapping[str, RuleType]], Loaded]
    run: Callable[[Any, Any], Any]  # (program, converted activation) → the rule's value
    results: dict[str, Any] = field(default_factory=dict)


def _identity(activation: Mapping[str, Any]) -> Any:
    return activation


def _compiled() -> Candidate:
    def load(text: str, variables: Mapping[str, RuleType]) -> Loaded:
        return Loaded(rules.compile_rule(text, variables), _identity)

    return Candidate(
        "compiled",
        "cel-expr-python",
        "types against the declared schema (cel-cpp's checker)",
        "cel-cpp FunctionDecl with signatures; compiled calls go straight to Python",
        load,
        lambda rule, act: rule.evaluate(act),
    )


def _messages(variables: Mapping[str, RuleType]) -> Callable[[Mapping[str, Any]], Any]:
    """Canonical values → protobuf messages of the schema cel-cpp checked against."""
    pool = rules._pool(variables)
    classes: dict[str, Any] = {}

    def cls(t: RuleType) -> Any:
        if t.name not in classes:
            classes[t.name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(t.name))
        return classes[t.name]

    def build(t: RuleType) -> Callable[[Any], Any]:
        if t.kind == "list":
            assert t.element is not None
            item = build(t.element)
            return lambda v: [item(x) for x in v]
        if t.kind != "record":
            return _identity
        make = cls(t)
        fields = [(n, build(ft)) for n, ft in t.record]
        return lambda v: make(**{n: f(v[n]) for n, f in fields if n in v})

    builders = {n: build(t) for n, t in variables.items()}
    return lambda act: {n: b(act[n]) for n, b in builders.items()}


def _cel_expr_python() -> Candidate:
    def load(text: str, variables: Mapping[str, RuleType]) -> Loaded:
        return Loaded(rules.check(text, variables), _messages(variables))

    return Candidate(
        "cel-expr-python",
        "cel-expr-python",
        "types against the declared schema (protobuf descriptors, function signatures)",
        "FunctionDecl/Overload with types and a Python impl (as gateway.catalogue.rules does)",
        load,
        lambda expression, data: expression.eval(data=data).value(),
    )


def _defaults(variables: Mapping[str, RuleType]) -> Callable[[Mapping[str, Any]], Any]:
    """Canonical records with every declared field: a department leaves optional fields out,
    and a rule over maps must read them as the schema's default (proto3, as the checker
    assumes), not fail with "no such key"."""

    def fill(t: RuleType) -> Callable[[Any], Any]:
        if t.kind == "list":
            assert t.element is not None
            item = fill(t.element)
            return lambda v: [item(x) for x in v]
        if t.kind != "record":
            return _identity
        fields = [(n, fill(ft), [] if ft.kind == "list" else ft.default()) for n, ft in t.record]
        return lambda v: {n: f(v[n]) if n in v else d for n, f, d in fields}

    fillers = {n: fill(t) for n, t in variables.items()}
    return lambda act: {n: f(act[n]) for n, f in fillers.items()}


DOMAIN_FUNCTIONS = dict(rules.DOMAIN)


def _cel_rust() -> Candidate | str:
    try:
        import cel  # noqa: PLC0415 - optional: the bench extra
    except ImportError:
        return "not installed (pip install -e '.[bench]')"

    def load(text: str, variables: Mapping[str, RuleType]) -> Loaded:
        program = cel.compile(text)
        fill = _defaults(variables)
        return Loaded(
            program, lambda act: cel.Context(variables=fill(act), functions=DOMAIN_FUNCTIONS)
        )

    return Candidate(
        "cel-rust",
        "common-expression-language",
        "syntax only (no checker: variables, fields and functions are resolved when run)",
        "Context(functions={name: callable}): untyped, any arity",
        load,
        lambda program, context: program.execute(context),
    )


def _celpy_functions(celtypes: Any) -> dict[str, Callable[..., Any]]:
    """The domain functions with their results as celpy's value types, as celpy's own
    functions return them (plain Python values also pass these five rules); arguments arrive
    as celpy values, subclasses of str, int and list, so the functions are unchanged."""
    out = {
        "region_contains": lambda a, b: celtypes.BoolType(functions.region_contains(a, b)),
        "distinct_count": lambda xs: celtypes.IntType(functions.distinct_count(xs)),
        "kin_relation": lambda a, b: celtypes.StringType(functions.kin_relation(a, b)),
        "nfkc": lambda s: celtypes.StringType(functions.nfkc(s)),
        "add_days": lambda d, n: celtypes.StringType(functions.add_days(d, n)),
        "add_months": lambda m, n: celtypes.StringType(functions.add_months(m, n)),
    }
    for name, fn in out.items():
        # The transpiler writes a call as `<fn.__module__>.<fn.__qualname__>(…)` and runs it
        # in celpy.evaluation's own globals: see _cel_python().
        fn.__module__, fn.__qualname__ = "proofless_cel_functions", name
    return out


def _cel_python(transpiled: bool) -> Candidate | str:
    try:
        import celpy  # noqa: PLC0415 - optional: the bench extra
        from celpy import celparser, celtypes, evaluation  # noqa: PLC0415
    except ImportError:
        return "not installed (pip install -e '.[bench]')"
    fns = _celpy_functions(celtypes)
    registers = "Environment.program(ast, functions={name: callable}): untyped"
    if transpiled:
        # celpy's transpiler cannot call a function it cannot name from its own module: the
        # only way in is to plant a module-like object in celpy.evaluation's globals.
        evaluation.__dict__["proofless_cel_functions"] = SimpleNamespace(**fns)
        registers += "; transpiled: only by planting a module in celpy.evaluation's globals"
    runner = celpy.CompiledRunner if transpiled else celpy.InterpretedRunner

    def load(text: str, variables: Mapping[str, RuleType]) -> Loaded:
        parser = celparser.CELParser.CEL_PARSER
        if parser is not None and parser.options.tree_class is not runner.tree_node_class:
            # one parser per process, built for one runner's trees; celpy's documented reset
            celparser.CELParser.CEL_PARSER = None
        env = celpy.Environment(runner_class=runner)
        program = env.program(env.compile(text), functions=fns)
        fill = _defaults(variables)
        to_cel = celpy.json_to_cel
        return Loaded(program, lambda act: {n: to_cel(v) for n, v in fill(act).items()})

    return Candidate(
        "cel-python (transpiled)" if transpiled else "cel-python",
        "cel-python",
        "syntax only (no checker: variables, fields and functions are resolved when run)",
        registers,
        load,
        lambda program, activation: program.evaluate(activation),
    )


def candidates(quick: bool = False) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates that can run here, and why any other is skipped."""
    found: list[Candidate] = [_compiled(), _cel_expr_python()]
    skipped: dict[str, str] = {}
    makers: list[tuple[str, Callable[[], Candidate | str]]] = [("cel-rust", _cel_rust)]
    if quick:
        skipped["cel-python"] = "not in --quick (an evaluation takes up to seconds)"
    else:
        makers.append(("cel-python", lambda: _cel_python(False)))
        makers.append(("cel-python (transpiled)", lambda: _cel_python(True)))
    for name, make in makers:
        made = make()
        if isinstance(made, str):
            skipped[name] = made
        else:
            found.append(made)
    return found, skipped


# ---- measuring ---------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _as_bool(value: Any) -> Any:
    """A library's answer as a plain value for comparison (celpy's BoolType is an int)."""
    return bool(value) if type(value).__name__ == "BoolType" else value


def _answer(c: Candidate, loaded: Loaded, activation: Mapping[str, Any]) -> Any:
    try:
        return _as_bool(c.run(loaded.program, loaded.convert(activation)))
    except Exception as exc:  # any library error is an answer to report
        return f"error: {type(exc).__name__}"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _probe(c: Candidate, text: str, variables: Mapping[str, RuleType], act: Any) -> str:
    try:
        loaded = c.load(text, variables)
    except Exception:  # every library has its own error types
        return "refused at load"
    with _quiet_stderr():  # the Rust bindings print a failing Python function's error
        value = _answer(c, loaded, act)
    if isinstance(value, str) and value.startswith("error"):
        return f"loads; the first call fails ({value.removeprefix('error: ')})"
    return f"loads; the first call answers {value!r}"


def _passes(fn: Callable[[Any], Any], inputs: list[Any], budget_s: float) -> float:
    """Whole passes of `fn` over `inputs` until `budget_s` of this process's CPU time is
    spent (at least one): CPU µs per evaluation."""
    passes, start = 0, time.process_time()
    while True:
        for x in inputs:
            fn(x)
        passes += 1
        spent = time.process_time() - start
        if spent >= budget_s:
            return spent / (passes * len(inputs)) * 1e6


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "rounds": len(values),
    }


def _load_figures(c: Candidate, specs: Mapping[str, Any], rounds: int) -> dict[str, Loaded]:
    """Load the rules (the first time also builds the library's parser) and time reloads."""
    start = time.process_time()
    loaded = {code: c.load(s.rule_text, s.rule.variables) for code, s in specs.items()}
    c.results["load_ms_first_per_rule"] = (time.process_time() - start) * 1e3 / len(specs)
    per_rule: list[float] = []
    for _ in range(max(3, rounds)):
        start = time.process_time()
        for s in specs.values():
            c.load(s.rule_text, s.rule.variables)
        per_rule.append((time.process_time() - start) * 1e3 / len(specs))
    c.results["load_ms_per_rule"] = _summary(per_rule)
    return loaded


def _verify(
    c: Candidate, loaded: Mapping[str, Loaded], cases: Mapping[str, list[Case]]
) -> dict[str, tuple[float, float]]:
    """Every answer against the compiled rule's. Each rule's pass is timed as a first call
    figure: rule → (CPU µs per call, CPU s for the pass)."""
    wrong: list[str] = []
    total = 0
    timed: dict[str, tuple[float, float]] = {}
    for code, ks in cases.items():
        start = time.process_time()
        for i, k in enumerate(ks):
            total += 1
            got = _answer(c, loaded[code], k.activation)
            if got is not k.expected:
                wrong.append(f"{code} case {i}: {got!r}, expected {k.expected!r}")
        spent = time.process_time() - start
        timed[code] = (spent / len(ks) * 1e6, spent)
    c.results["agree"] = f"{total - len(wrong)}/{total}"
    c.results["disagreements"] = wrong[:10]
    return timed


def _by_rows(
    c: Candidate, lo: Loaded, activation: Mapping[str, Any], budget_s: float, rounds: int
) -> dict[int, float]:
    """CPU µs per call (median of the rounds) of the contribution rule over the first
    quarter, half and all of a history: linear in the rows, or not."""
    history = activation["record"]["history"]
    times: dict[int, list[float]] = {}
    for _ in range(rounds):
        for part in (4, 2, 1):
            rows = history[: len(history) // part]
            act = {**activation, "record": {**activation["record"], "history": rows}}
            us = _passes(lambda a: c.run(lo.program, lo.convert(a)), [act], budget_s)
            times.setdefault(len(rows), []).append(us)
    return {n: statistics.median(v) for n, v in times.items()}


def measure(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Every figure of this module, as a JSON-ready dict (bench/results.json's "cel")."""
    rounds = rounds or (1 if quick else 3)
    budget_s = 0.02 if quick else 0.1  # CPU time per (candidate, rule, eval|call) per round
    slow_s = 2.0
    catalogue = bench_catalogue()
    cases = build_cases(catalogue)
    if quick:
        cases = {code: ks[:3] for code, ks in cases.items()}
    specs = {code: catalogue.claims[code] for code in CLAIMS}
    found, skipped = candidates(quick)
    logging.getLogger("celpy").setLevel(logging.CRITICAL)  # it logs every evaluation error

    # 1. load; 2. the answers: the compiled rule's are the reference, every candidate must
    # give the same on every activation; 3. catalogue errors at load
    loaded = {c.name: _load_figures(c, specs, rounds) for c in found}
    compiled = loaded["compiled"]
    cases = {
        code: [Case(code, k.activation, compiled[code].program.evaluate(k.activation)) for k in ks]
        for code, ks in cases.items()
    }
    residence = specs["household.residence"].rule.variables
    probe_act = cases["household.residence"][0].activation
    # A rule whose checking pass took more than slow_s keeps that pass as its only call
    # figure (cel-python takes seconds per contribution history); its eval is not timed.
    figures: dict[tuple[str, str, str], list[float]] = {}
    slow: set[tuple[str, str]] = set()
    for c in found:
        for code, (us, spent) in _verify(c, loaded[c.name], cases).items():
            if spent > slow_s:
                slow.add((c.name, code))
                figures[(c.name, code, "call")] = [us]
        c.results["probes"] = {
            name: _probe(c, text, residence, probe_act) for name, text in PROBES.items()
        }
        c.results["errors_refused_at_load"] = sum(
            v == "refused at load" for v in c.results["probes"].values()
        )

    # 4. time, per rule: eval (the library's values ready) and call (from the canonical
    # records); the candidates interleaved, forward then reverse
    for r in range(rounds):
        for code in CLAIMS:
            acts = [k.activation for k in cases[code]]
            for c in found if r % 2 == 0 else list(reversed(found)):
                if (c.name, code) in slow:
                    continue
                lo = loaded[c.name][code]
                program, run, convert = lo.program, c.run, lo.convert
                ready = [convert(a) for a in acts]
                jobs: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
                    "eval": (lambda x, p=program, run=run: run(p, x), ready),
                    "call": (lambda a, p=program, run=run, cv=convert: run(p, cv(a)), acts),
                }
                for kind, (fn, inputs) in jobs.items():
                    figures.setdefault((c.name, code, kind), []).append(
                        _passes(fn, inputs, budget_s)
                    )
    # 5. how a call grows with the history: the longest one, a quarter, half and all of it
    longest = max(
        (k.activation for k in cases["social_security.contribution"]),
        key=lambda a: len(a["record"]["history"]),
    )
    for c in found:
        if (c.name, "social_security.contribution") not in slow:
            lo = loaded[c.name]["social_security.contribution"]
            c.results["contribution_call_us_by_rows"] = _by_rows(c, lo, longest, budget_s, rounds)
    for c in found:
        c.results["version"] = _version(c.distribution)
        c.results["checks_at_load"] = c.checks
        c.results["registers_functions"] = c.registers
        for kind in ("eval", "call"):
            c.results[f"{kind}_us"] = {
                code: _summary(figures[(c.name, code, kind)])
                for code in CLAIMS
                if (c.name, code, kind) in figures
            }
    contribution = cases["social_security.contribution"]
    rows = [len(k.activation["record"]["history"]) for k in contribution]
    months = [len({h["month"] for h in k.activation["record"]["history"]}) for k in contribution]
    return {
        "rounds": rounds,
        "cpu_budget_s_per_figure": budget_s,
        "cases": {code: len(ks) for code, ks in cases.items()},
        "holds": {code: sum(k.expected is True for k in ks) for code, ks in cases.items()},
        "contribution_history": {
            "rows_median": statistics.median(rows),
            "rows_max": max(rows),
            "months_median": statistics.median(months),
            "months_max": max(months),
        },
        "candidates": {c.name: c.results for c in found},
        "skipped": skipped,
    }


SHORT = {
    "household.residence": "residence",
    "household.kinship": "kinship",
    "social_security.contribution": "contribution",
    "property.ownership": "ownership",
    "property.encumbrance": "encumbrance",
}


def _us(figure: Mapping[str, float] | None, rounds: int) -> str:
    if figure is None:
        return "-"
    value = figure["median"]
    text = f"{value:.1f}" if value < 10_000 else f"{value:,.0f}"
    return text + ("*" if figure["rounds"] < rounds else "")


def table(results: Mapping[str, Any]) -> str:
    cands: Mapping[str, Any] = results["candidates"]
    names = list(cands)
    rounds = results["rounds"]
    width = max(14, *(len(n) + 2 for n in names))
    lines = [
        f"CPU µs per evaluation, median of {rounds} round(s); call: from the canonical records "
        "(conversion included), eval: the library's values ready; * once (the checking pass "
        "took > 2 s; eval not timed)",
        f"{'':24s}" + "".join(f"{n:>{width}s}" for n in names),
    ]

    def row(label: str, cells: Iterable[str]) -> None:
        lines.append(f"{label:24s}" + "".join(f"{x:>{width}s}" for x in cells))

    for code in CLAIMS:
        for kind in ("call", "eval"):
            cells = (_us(cands[n][f"{kind}_us"].get(code), rounds) for n in names)
            row(f"{SHORT[code]} {kind}", cells)
    by_rows = {n: cands[n].get("contribution_call_us_by_rows", {}) for n in names}
    for i in range(3):
        sizes = {list(v)[i] for v in by_rows.values() if v}
        label = f"contribution {'/'.join(map(str, sorted(sizes)))} rows"
        row(
            label,
            (
                _us({"median": list(v.values())[i], "rounds": rounds} if v else None, rounds)
                for v in by_rows.values()
            ),
        )
    row("load ms per rule", (f"{cands[n]['load_ms_per_rule']['median']:.2f}" for n in names))
    row("agrees with compiled", (cands[n]["agree"] for n in names))
    row(
        "errors refused at load",
        (f"{cands[n]['errors_refused_at_load']}/{len(PROBES)}" for n in names),
    )
    row("version", (cands[n]["version"] for n in names))
    h = results["contribution_history"]
    lines.append(
        "activations: "
        + ", ".join(
            f"{SHORT[c]} {n} ({results['holds'][c]} hold)" for c, n in results["cases"].items()
        )
        + f"; contribution history: median {h['rows_median']} rows ({h['months_median']} months)"
        f", max {h['rows_max']} ({h['months_max']})"
    )
    for n in names:
        wrong = [f"{p}: {v}" for p, v in cands[n]["probes"].items() if v != "refused at load"]
        if wrong:
            lines.append(f"{n} at load takes: " + "; ".join(wrong))
        for d in cands[n]["disagreements"]:
            lines.append(f"{n} DISAGREES: {d}")
    for n, why in results["skipped"].items():
        lines.append(f"{n}: skipped, {why}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, fewer activations")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    results = measure(quick=args.quick, rounds=args.rounds)
    print(table(results))
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
