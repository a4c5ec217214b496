import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Department(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPARTMENT_UNSPECIFIED: _ClassVar[Department]
    DEPARTMENT_HOUSEHOLD: _ClassVar[Department]
    DEPARTMENT_SOCIAL_SECURITY: _ClassVar[Department]
    DEPARTMENT_PROPERTY: _ClassVar[Department]

class Gender(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENDER_UNSPECIFIED: _ClassVar[Gender]
    GENDER_MALE: _ClassVar[Gender]
    GENDER_FEMALE: _ClassVar[Gender]

class Relation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELATION_UNSPECIFIED: _ClassVar[Relation]
    RELATION_HEAD: _ClassVar[Relation]
    RELATION_SPOUSE: _ClassVar[Relation]
    RELATION_CHILD: _ClassVar[Relation]
    RELATION_PARENT: _ClassVar[Relation]
    RELATION_GRANDCHILD: _ClassVar[Relation]
    RELATION_GRANDPARENT: _ClassVar[Relation]
    RELATION_SIBLING: _ClassVar[Relation]
    RELATION_OTHER: _ClassVar[Relation]

class HouseholdStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOUSEHOLD_STATUS_UNSPECIFIED: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_ACTIVE: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_MOVED_OUT: _ClassVar[HouseholdStatus]
    HOUSEHOLD_STATUS_DECEASED: _ClassVar[HouseholdStatus]

class InsuranceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSURANCE_TYPE_UNSPECIFIED: _ClassVar[InsuranceType]
    INSURANCE_TYPE_PENSION: _ClassVar[InsuranceType]
    INSURANCE_TYPE_MEDICAL: _ClassVar[InsuranceType]
    INSURANCE_TYPE_UNEMPLOYMENT: _ClassVar[InsuranceType]
    INSURANCE_TYPE_WORK_INJURY: _ClassVar[InsuranceType]
    INSURANCE_TYPE_MATERNITY: _ClassVar[InsuranceType]

class InsuranceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSURANCE_STATUS_UNSPECIFIED: _ClassVar[InsuranceStatus]
    INSURANCE_STATUS_ACTIVE: _ClassVar[InsuranceStatus]
    INSURANCE_STATUS_SUSPENDED: _ClassVar[InsuranceStatus]
    INSURANCE_STATUS_TERMINATED: _ClassVar[InsuranceStatus]

class PropertyUsage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROPERTY_USAGE_UNSPECIFIED: _ClassVar[PropertyUsage]
    PROPERTY_USAGE_RESIDENTIAL: _ClassVar[PropertyUsage]
    PROPERTY_USAGE_COMMERCIAL: _ClassVar[PropertyUsage]
    PROPERTY_USAGE_OFFICE: _ClassVar[PropertyUsage]
    PROPERTY_USAGE_INDUSTRIAL: _ClassVar[PropertyUsage]
    PROPERTY_USAGE_OTHER: _ClassVar[PropertyUsage]

class CoOwnership(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CO_OWNERSHIP_UNSPECIFIED: _ClassVar[CoOwnership]
    CO_OWNERSHIP_SOLE: _ClassVar[CoOwnership]
    CO_OWNERSHIP_JOINT: _ClassVar[CoOwnership]
    CO_OWNERSHIP_SHARED: _ClassVar[CoOwnership]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_HOLDS: _ClassVar[Verdict]
    VERDICT_DOES_NOT_HOLD: _ClassVar[Verdict]
    VERDICT_UNDETERMINED: _ClassVar[Verdict]
DEPARTMENT_UNSPECIFIED: Department
DEPARTMENT_HOUSEHOLD: Department
DEPARTMENT_SOCIAL_SECURITY: Department
DEPARTMENT_PROPERTY: Department
GENDER_UNSPECIFIED: Gender
GENDER_MALE: Gender
GENDER_FEMALE: Gender
RELATION_UNSPECIFIED: Relation
RELATION_HEAD: Relation
RELATION_SPOUSE: Relation
RELATION_CHILD: Relation
RELATION_PARENT: Relation
RELATION_GRANDCHILD: Relation
RELATION_GRANDPARENT: Relation
RELATION_SIBLING: Relation
RELATION_OTHER: Relation
HOUSEHOLD_STATUS_UNSPECIFIED: HouseholdStatus
HOUSEHOLD_STATUS_ACTIVE: HouseholdStatus
HOUSEHOLD_STATUS_MOVED_OUT: HouseholdStatus
HOUSEHOLD_STATUS_DECEASED: HouseholdStatus
INSURANCE_TYPE_UNSPECIFIED: InsuranceType
INSURANCE_TYPE_PENSION: InsuranceType
INSURANCE_TYPE_MEDICAL: InsuranceType
INSURANCE_TYPE_UNEMPLOYMENT: InsuranceType
INSURANCE_TYPE_WORK_INJURY: InsuranceType
INSURANCE_TYPE_MATERNITY: InsuranceType
INSURANCE_STATUS_UNSPECIFIED: InsuranceStatus
INSURANCE_STATUS_ACTIVE: InsuranceStatus
INSURANCE_STATUS_SUSPENDED: InsuranceStatus
INSURANCE_STATUS_TERMINATED: InsuranceStatus
PROPERTY_USAGE_UNSPECIFIED: PropertyUsage
PROPERTY_USAGE_RESIDENTIAL: PropertyUsage
PROPERTY_USAGE_COMMERCIAL: PropertyUsage
PROPERTY_USAGE_OFFICE: PropertyUsage
PROPERTY_USAGE_INDUSTRIAL: PropertyUsage
PROPERTY_USAGE_OTHER: PropertyUsage
CO_OWNERSHIP_UNSPECIFIED: CoOwnership
CO_OWNERSHIP_SOLE: CoOwnership
CO_OWNERSHIP_JOINT: CoOwnership
CO_OWNERSHIP_SHARED: CoOwnership
VERDICT_UNSPECIFIED: Verdict
VERDICT_HOLDS: Verdict
VERDICT_DOES_NOT_HOLD: Verdict
VERDICT_UNDETERMINED: Verdict

class RequestContext(_message.Message):
    __slots__ = ("service_item", "case_id", "purpose", "consent_token")
    SERVICE_ITEM_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CONSENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    service_item: str
    case_id: str
    purpose: str
    consent_token: str
    def __init__(self, service_item: _Optional[str] = ..., case_id: _Optional[str] = ..., purpose: _Optional[str] = ..., consent_token: _Optional[str] = ...) -> None: ...

class Applicant(_message.Message):
    __slots__ = ("id_number", "name", "credit_code")
    ID_NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREDIT_CODE_FIELD_NUMBER: _ClassVar[int]
    id_number: str
    name: str
    credit_code: str
    def __init__(self, id_number: _Optional[str] = ..., name: _Optional[str] = ..., credit_code: _Optional[str] = ...) -> None: ...

class RecordRequest(_message.Message):
    __slots__ = ("context", "applicant", "read_mask")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    context: RequestContext
    applicant: Applicant
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, context: _Optional[_Union[RequestContext, _Mapping]] = ..., applicant: _Optional[_Union[Applicant, _Mapping]] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class Attestation(_message.Message):
    __slots__ = ("proof", "audit_index", "audit_log", "proof_id", "source_department", "as_of", "disclosed_fields", "department", "applicant_key")
    PROOF_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    AUDIT_LOG_FIELD_NUMBER: _ClassVar[int]
    PROOF_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    DISCLOSED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_KEY_FIELD_NUMBER: _ClassVar[int]
    proof: str
    audit_index: int
    audit_log: str
    proof_id: str
    source_department: Department
    as_of: _timestamp_pb2.Timestamp
    disclosed_fields: _containers.RepeatedScalarFieldContainer[str]
    department: str
    applicant_key: str
    def __init__(self, proof: _Optional[str] = ..., audit_index: _Optional[int] = ..., audit_log: _Optional[str] = ..., proof_id: _Optional[str] = ..., source_department: _Optional[_Union[Department, str]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disclosed_fields: _Optional[_Iterable[str]] = ..., department: _Optional[str] = ..., applicant_key: _Optional[str] = ...) -> None: ...

class HouseholdMember(_message.Message):
    __slots__ = ("name", "relation_to_head")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RELATION_TO_HEAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    relation_to_head: Relation
    def __init__(self, name: _Optional[str] = ..., relation_to_head: _Optional[_Union[Relation, str]] = ...) -> None: ...

class HouseholdRecord(_message.Message):
    __slots__ = ("name", "id_number", "gender", "ethnicity", "birth_date", "household_number", "address", "region_code", "relation_to_head", "members", "registration_authority", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    ETHNICITY_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    HOUSEHOLD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    RELATION_TO_HEAD_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    id_number: str
    gender: Gender
    ethnicity: str
    birth_date: str
    household_number: str
    address: str
    region_code: str
    relation_to_head: Relation
    members: _containers.RepeatedCompositeFieldContainer[HouseholdMember]
    registration_authority: str
    status: HouseholdStatus
    def __init__(self, name: _Optional[str] = ..., id_number: _Optional[str] = ..., gender: _Optional[_Union[Gender, str]] = ..., ethnicity: _Optional[str] = ..., birth_date: _Optional[str] = ..., household_number: _Optional[str] = ..., address: _Optional[str] = ..., region_code: _Optional[str] = ..., relation_to_head: _Optional[_Union[Relation, str]] = ..., members: _Optional[_Iterable[_Union[HouseholdMember, _Mapping]]] = ..., registration_authority: _Optional[str] = ..., status: _Optional[_Union[HouseholdStatus, str]] = ...) -> None: ...

class HouseholdRecordResponse(_message.Message):
    __slots__ = ("record", "attestation")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    record: HouseholdRecord
    attestation: Attestation
    def __init__(self, record: _Optional[_Union[HouseholdRecord, _Mapping]] = ..., attestation: _Optional[_Union[Attestation, _Mapping]] = ...) -> None: ...

class Insurance(_message.Message):
    __slots__ = ("type", "status", "employer", "region_code", "first_month", "last_month", "total_months")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EMPLOYER_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    FIRST_MONTH_FIELD_NUMBER: _ClassVar[int]
    LAST_MONTH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MONTHS_FIELD_NUMBER: _ClassVar[int]
    type: InsuranceType
    status: InsuranceStatus
    employer: str
    region_code: str
    first_month: str
    last_month: str
    total_months: int
    def __init__(self, type: _Optional[_Union[InsuranceType, str]] = ..., status: _Optional[_Union[InsuranceStatus, str]] = ..., employer: _Optional[str] = ..., region_code: _Optional[str] = ..., first_month: _Optional[str] = ..., last_month: _Optional[str] = ..., total_months: _Optional[int] = ...) -> None: ...

class Contribution(_message.Message):
    __slots__ = ("month", "type", "employer", "region_code", "base_cents")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EMPLOYER_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    BASE_CENTS_FIELD_NUMBER: _ClassVar[int]
    month: str
    type: InsuranceType
    employer: str
    region_code: str
    base_cents: int
    def __init__(self, month: _Optional[str] = ..., type: _Optional[_Union[InsuranceType, str]] = ..., employer: _Optional[str] = ..., region_code: _Optional[str] = ..., base_cents: _Optional[int] = ...) -> None: ...

class SocialSecurityRecord(_message.Message):
    __slots__ = ("name", "id_number", "insurances", "history")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_NUMBER_FIELD_NUMBER: _ClassVar[int]
    INSURANCES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    id_number: str
    insurances: _containers.RepeatedCompositeFieldContainer[Insurance]
    history: _containers.RepeatedCompositeFieldContainer[Contribution]
    def __init__(self, name: _Optional[str] = ..., id_number: _Optional[str] = ..., insurances: _Optional[_Iterable[_Union[Insurance, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[Contribution, _Mapping]]] = ...) -> None: ...

class SocialSecurityRecordResponse(_message.Message):
    __slots__ = ("record", "attestation")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    record: SocialSecurityRecord
    attestation: Attestation
    def __init__(self, record: _Optional[_Union[SocialSecurityRecord, _Mapping]] = ..., attestation: _Optional[_Union[Attestation, _Mapping]] = ...) -> None: ...

class PropertyRecord(_message.Message):
    __slots__ = ("certificate_number", "location", "region_code", "area_square_meters", "usage", "co_ownership", "share", "registration_date", "mortgaged", "seized")
    CERTIFICATE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    AREA_SQUARE_METERS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CO_OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_DATE_FIELD_NUMBER: _ClassVar[int]
    MORTGAGED_FIELD_NUMBER: _ClassVar[int]
    SEIZED_FIELD_NUMBER: _ClassVar[int]
    certificate_number: str
    location: str
    region_code: str
    area_square_meters: float
    usage: PropertyUsage
    co_ownership: CoOwnership
    share: float
    registration_date: str
    mortgaged: bool
    seized: bool
    def __init__(self, certificate_number: _Optional[str] = ..., location: _Optional[str] = ..., region_code: _Optional[str] = ..., area_square_meters: _Optional[float] = ..., usage: _Optional[_Union[PropertyUsage, str]] = ..., co_ownership: _Optional[_Union[CoOwnership, str]] = ..., share: _Optional[float] = ..., registration_date: _Optional[str] = ..., mortgaged: _Optional[bool] = ..., seized: _Optional[bool] = ...) -> None: ...

class PropertyRecordsResponse(_message.Message):
    __slots__ = ("records", "attestation")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[PropertyRecord]
    attestation: Attestation
    def __init__(self, records: _Optional[_Iterable[_Union[PropertyRecord, _Mapping]]] = ..., attestation: _Optional[_Union[Attestation, _Mapping]] = ...) -> None: ...

class Claim(_message.Message):
    __slots__ = ("id", "type", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class VerifyClaimsRequest(_message.Message):
    __slots__ = ("context", "applicant", "claims")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    context: RequestContext
    applicant: Applicant
    claims: _containers.RepeatedCompositeFieldContainer[Claim]
    def __init__(self, context: _Optional[_Union[RequestContext, _Mapping]] = ..., applicant: _Optional[_Union[Applicant, _Mapping]] = ..., claims: _Optional[_Iterable[_Union[Claim, _Mapping]]] = ...) -> None: ...

class ClaimResult(_message.Message):
    __slots__ = ("id", "type", "verdict", "status", "source_department", "as_of", "department")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    verdict: Verdict
    status: _status_pb2.Status
    source_department: Department
    as_of: _timestamp_pb2.Timestamp
    department: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., source_department: _Optional[_Union[Department, str]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., department: _Optional[str] = ...) -> None: ...

class VerifyClaimsResponse(_message.Message):
    __slots__ = ("results", "attestation")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ClaimResult]
    attestation: Attestation
    def __init__(self, results: _Optional[_Iterable[_Union[ClaimResult, _Mapping]]] = ..., attestation: _Optional[_Union[Attestation, _Mapping]] = ...) -> None: ...

class ListServiceItemsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecordGrant(_message.Message):
    __slots__ = ("record_type", "fields")
    RECORD_TYPE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    record_type: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, record_type: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class ServiceItem(_message.Message):
    __slots__ = ("code", "name", "records", "claims", "consent_required", "purpose_required")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    records: _containers.RepeatedCompositeFieldContainer[RecordGrant]
    claims: _containers.RepeatedScalarFieldContainer[str]
    consent_required: bool
    purpose_required: bool
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., records: _Optional[_Iterable[_Union[RecordGrant, _Mapping]]] = ..., claims: _Optional[_Iterable[str]] = ..., consent_required: _Optional[bool] = ..., purpose_required: _Optional[bool] = ...) -> None: ...

class ListServiceItemsResponse(_message.Message):
    __slots__ = ("caller", "items", "policy_version", "catalogue_version")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_VERSION_FIELD_NUMBER: _ClassVar[int]
    caller: str
    items: _containers.RepeatedCompositeFieldContainer[ServiceItem]
    policy_version: str
    catalogue_version: str
    def __init__(self, caller: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ServiceItem, _Mapping]]] = ..., policy_version: _Optional[str] = ..., catalogue_version: _Optional[str] = ...) -> None: ...

class EvidenceRequest(_message.Message):
    __slots__ = ("context", "applicant", "evidence_type", "read_mask")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    context: RequestContext
    applicant: Applicant
    evidence_type: str
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, context: _Optional[_Union[RequestContext, _Mapping]] = ..., applicant: _Optional[_Union[Applicant, _Mapping]] = ..., evidence_type: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class EvidenceResponse(_message.Message):
    __slots__ = ("evidence_type", "records", "attestation")
    EVIDENCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    evidence_type: str
    records: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    attestation: Attestation
    def __init__(self, evidence_type: _Optional[str] = ..., records: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., attestation: _Optional[_Union[Attestation, _Mapping]] = ...) -> None: ...

class ListEvidenceTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FieldSchema(_message.Message):
    __slots__ = ("name", "type", "description", "personal", "values", "fields")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    personal: bool
    values: _containers.RepeatedScalarFieldContainer[str]
    fields: _containers.RepeatedCompositeFieldContainer[FieldSchema]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., personal: _Optional[bool] = ..., values: _Optional[_Iterable[str]] = ..., fields: _Optional[_Iterable[_Union[FieldSchema, _Mapping]]] = ...) -> None: ...

class EvidenceSchema(_message.Message):
    __slots__ = ("code", "name", "description", "department", "department_name", "subject", "cardinality", "fields")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CARDINALITY_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    description: str
    department: str
    department_name: str
    subject: str
    cardinality: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldSchema]
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., department: _Optional[str] = ..., department_name: _Optional[str] = ..., subject: _Optional[str] = ..., cardinality: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldSchema, _Mapping]]] = ...) -> None: ...

class ParamSchema(_message.Message):
    __slots__ = ("name", "type", "description", "required", "default", "values", "constraint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    required: bool
    default: str
    values: _containers.RepeatedScalarFieldContainer[str]
    constraint: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., required: _Optional[bool] = ..., default: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., constraint: _Optional[str] = ...) -> None: ...

class ClaimSchema(_message.Message):
    __slots__ = ("code", "evidence_type", "description", "params", "max_per_request")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    code: str
    evidence_type: str
    description: str
    params: _containers.RepeatedCompositeFieldContainer[ParamSchema]
    max_per_request: int
    def __init__(self, code: _Optional[str] = ..., evidence_type: _Optional[str] = ..., description: _Optional[str] = ..., params: _Optional[_Iterable[_Union[ParamSchema, _Mapping]]] = ..., max_per_request: _Optional[int] = ...) -> None: ...

class ItemView(_message.Message):
    __slots__ = ("code", "name", "evidence", "claims", "consent_required", "purpose_required")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    evidence: _containers.RepeatedCompositeFieldContainer[EvidenceSchema]
    claims: _containers.RepeatedCompositeFieldContainer[ClaimSchema]
    consent_required: bool
    purpose_required: bool
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., evidence: _Optional[_Iterable[_Union[EvidenceSchema, _Mapping]]] = ..., claims: _Optional[_Iterable[_Union[ClaimSchema, _Mapping]]] = ..., consent_required: _Optional[bool] = ..., purpose_required: _Optional[bool] = ...) -> None: ...

class ListEvidenceTypesResponse(_message.Message):
    __slots__ = ("caller", "items", "policy_version", "catalogue_version")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOGUE_VERSION_FIELD_NUMBER: _ClassVar[int]
    caller: str
    items: _containers.RepeatedCompositeFieldContainer[ItemView]
    policy_version: str
    catalogue_version: str
    def __init__(self, caller: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ItemView, _Mapping]]] = ..., policy_version: _Optional[str] = ..., catalogue_version: _Optional[str] = ...) -> None: ...

class Party(_message.Message):
    __slots__ = ("role", "subject")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    role: str
    subject: Applicant
    def __init__(self, role: _Optional[str] = ..., subject: _Optional[_Union[Applicant, _Mapping]] = ...) -> None: ...

class CheckItemRequest(_message.Message):
    __slots__ = ("context", "applicant", "parties")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPLICANT_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    context: RequestContext
    applicant: Applicant
    parties: _containers.RepeatedCompositeFieldContainer[Party]
    def __init__(self, context: _Optional[_Union[RequestContext, _Mapping]] = ..., applicant: _Optional[_Union[Applicant, _Mapping]] = ..., parties: _Optional[_Iterable[_Union[Party, _Mapping]]] = ...) -> None: ...

class RequirementResult(_message.Message):
    __slots__ = ("name", "kind", "claim_type", "verdict", "status", "department", "as_of", "party")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    claim_type: str
    verdict: Verdict
    status: _status_pb2.Status
    department: str
    as_of: _timestamp_pb2.Timestamp
    party: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., claim_type: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., department: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., party: _Optional[str] = ...) -> None: ...

class Prefill(_message.Message):
    __slots__ = ("name", "evidence_type", "party", "records", "status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    evidence_type: str
    party: str
    records: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    status: _status_pb2.Status
    def __init__(self, name: _Optional[str] = ..., evidence_type: _Optional[str] = ..., party: _Optional[str] = ..., records: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class CheckItemResponse(_message.Message):
    __slots__ = ("service_item", "verdict", "requirements", "prefill", "attestation")
    SERVICE_ITEM_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    service_item: str
    verdict: Verdict
    requirements: _containers.RepeatedCompositeFieldContainer[RequirementResult]
    prefill: _containers.RepeatedCompositeFieldContainer[Prefill]
    attestation: Attestation
    def __init__(self, service_item: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., requirements: _Optional[_Iterable[_Union[RequirementResult, _Mapping]]] = ..., prefill: _Optional[_Iterable[_Union[Prefill, _Mapping]]] = ..., attestation: _Optional[_Union[Attestation, _Mapping]] = ...) -> None: ...
