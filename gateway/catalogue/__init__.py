"""The evidence catalogue: departments, evidence types and claims, declared by files.

    catalogue = load_catalogue("deploy/catalogue")     # every file, checked as a whole
    catalogue.evidence["household"]                     # an EvidenceType
    catalogue.claims["household.residence"]             # a ClaimSpec with its compiled rule

The format and what it guarantees are in ARCHITECTURE.md ("The evidence catalogue").
"""

from gateway.catalogue.load import (
    CatalogueError,
    catalogue_version,
    load_catalogue,
    parse_catalogue,
)
from gateway.catalogue.schema import (
    Catalogue,
    ClaimSpec,
    Department,
    EvidenceType,
    FieldSpec,
    ParamSpec,
    RecordSpec,
)

__all__ = [
    "Catalogue",
    "CatalogueError",
    "ClaimSpec",
    "Department",
    "EvidenceType",
    "FieldSpec",
    "ParamSpec",
    "RecordSpec",
    "catalogue_version",
    "load_catalogue",
    "parse_catalogue",
]
