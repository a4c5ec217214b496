"""What a caller may use, as the discovery RPCs answer it: ListServiceItems (the items, with
their evidence grants and claims) and ListEvidenceTypes (the same, with every schema,
description and parameter constraint), both built from the policy and the catalogue in force.

The view is the caller's own: only its items, and for each only the fields it may read — what
X-Road's allowedMethods and the EU Once-Only evidence broker give their users. Pure.
"""

from __future__ import annotations

from gateway.catalogue.schema import Catalogue, ClaimSpec, FieldSpec, ParamSpec
from gateway.domain.policy import ClaimGrant, ParamConstraint, Policy, ServiceItem
from proofless.v1 import verification_pb2 as pb


def service_items_view(
    caller: str, policy: Policy, catalogue: Catalogue
) -> pb.ListServiceItemsResponse:
    response = pb.ListServiceItemsResponse(
        caller=caller, policy_version=policy.version, catalogue_version=catalogue.version
    )
    for item in policy.items_for(caller):
        out = response.items.add(
            code=item.code,
            name=item.name,
            claims=sorted(item.claims),
            consent_required=item.consent_required,
            purpose_required=item.purpose_required,
        )
        for record_type, fields in sorted(item.records.items()):
            out.records.add(record_type=record_type, fields=sorted(fields))
    return response


def evidence_types_view(
    caller: str, policy: Policy, catalogue: Catalogue
) -> pb.ListEvidenceTypesResponse:
    response = pb.ListEvidenceTypesResponse(
        caller=caller, policy_version=policy.version, catalogue_version=catalogue.version
    )
    for item in policy.items_for(caller):
        response.items.append(_item(item, catalogue))
    return response


def _item(item: ServiceItem, catalogue: Catalogue) -> pb.ItemView:
    view = pb.ItemView(
        code=item.code,
        name=item.name,
        consent_required=item.consent_required,
        purpose_required=item.purpose_required,
    )
    for code, allowed in sorted(item.records.items()):
        evidence = catalogue.evidence.get(code)
        if evidence is None:
            continue
        department = catalogue.departments.get(evidence.department)
        view.evidence.add(
            code=code,
            name=evidence.name,
            description=evidence.description,
            department=evidence.department,
            department_name=department.name if department else "",
            subject=evidence.subject,
            cardinality=evidence.cardinality,
            fields=[_field(f) for f in evidence.record.fields if f.name in allowed],
        )
    for code, grant in sorted(item.claims.items()):
        claim = catalogue.claims.get(code)
        if claim is not None:
            view.claims.append(_claim(claim, grant))
    return view


def _field(f: FieldSpec) -> pb.FieldSchema:
    schema = pb.FieldSchema(
        name=f.name, type=f.type, description=f.description, personal=f.personal
    )
    if f.enum is not None:
        schema.values.extend(f.enum.values)
    if f.record is not None:
        schema.fields.extend(_field(sub) for sub in f.record.fields)
    return schema


def _claim(claim: ClaimSpec, grant: ClaimGrant) -> pb.ClaimSchema:
    return pb.ClaimSchema(
        code=claim.code,
        evidence_type=claim.evidence,
        description=claim.description,
        params=[_param(p, grant.params.get(p.name)) for p in claim.params],
        max_per_request=grant.repeat,
    )


def _param(p: ParamSpec, constraint: ParamConstraint | None) -> pb.ParamSchema:
    default = (
        ""
        if p.default is None
        else str(p.default).lower()
        if isinstance(p.default, bool)
        else str(p.default)
    )
    return pb.ParamSchema(
        name=p.name,
        type=p.type,
        description=p.description,
        required=p.required,
        default=default,
        values=list(p.values),
        constraint=constraint.describe() if constraint is not None else "",
    )
