"""The contacts the crm_sync / lead_enrichment / email_verification
stand-ins know: deterministic address verdicts, and the people the
enrichment stand-ins find. (Their rate-limit window is `base.SlidingWindow`.)

Verdicts come from the local part (and the domain), so tests and demos can
ask for any outcome by address:

    invalid*, bounce*, nobody*    invalid          spamtrap*, trap*   spamtrap
    catchall*, catch-all*         catchall         abuse*             abuse
    unknown*, greylist*           unknown          toxic*             toxic
    info*, contact*, sales*,      role             dnc*               do-not-contact
      support*, hello*, admin*                     anything else      valid
    a disposable domain (mailinator.com, yopmail.com, ...)           disposable
    a domain ending in .invalid, or no dot in the domain             invalid

`+tags` are ignored (`ann+x@acme.example` is `ann@acme.example`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["classify", "is_free_domain", "DISPOSABLE_DOMAINS", "FREE_DOMAINS", "PEOPLE", "find_person"]

DISPOSABLE_DOMAINS = frozenset({"mailinator.com", "yopmail.com", "guerrillamail.com", "10minutemail.com",
                                "tempmail.dev"})
FREE_DOMAINS = frozenset({"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.com"})

_RULES = (
    ("invalid", "invalid"), ("bounce", "invalid"), ("nobody", "invalid"),
    ("catchall", "catchall"), ("catch-all", "catchall"), ("catch_all", "catchall"),
    ("unknown", "unknown"), ("greylist", "unknown"),
    ("spamtrap", "spamtrap"), ("trap", "spamtrap"),
    ("abuse", "abuse"), ("toxic", "toxic"), ("dnc", "dnc"),
    ("info", "role"), ("contact", "role"), ("sales", "role"), ("support", "role"), ("hello", "role"),
    ("admin", "role"),
)


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.strip().lower().rpartition("@")
    return local.split("+", 1)[0], domain


def classify(address: str) -> str:
    """The verdict for an address (see the module docstring)."""
    local, domain = _split(address)
    if not local or not domain or "." not in domain or domain.endswith(".invalid"):
        return "invalid"
    if domain in DISPOSABLE_DOMAINS:
        return "disposable"
    for prefix, verdict in _RULES:
        if local.startswith(prefix):
            return verdict
    return "valid"


def is_free_domain(address: str) -> bool:
    return _split(address)[1] in FREE_DOMAINS


# The people the enrichment stand-ins (Apollo, Dropcontact) know.
PEOPLE: list[dict[str, Any]] = [
    {"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.example", "domain": "acme.example",
     "title": "VP Marketing", "company": "Acme", "linkedin": "www.linkedin.com/in/ann-lee-acme",
     "phone": "+33 1 23 45 67 89", "city": "Paris", "country": "France"},
    {"first_name": "Bob", "last_name": "Martin", "email": "bob.martin@globex.example", "domain": "globex.example",
     "title": "Head of Sales", "company": "Globex", "linkedin": "www.linkedin.com/in/bob-martin-globex",
     "phone": "+1 415 555 0101", "city": "San Francisco", "country": "United States"},
    {"first_name": "Chloe", "last_name": "Durand", "email": "chloe@initech.example", "domain": "initech.example",
     "title": "CTO", "company": "Initech", "linkedin": "www.linkedin.com/in/chloe-durand-initech",
     "phone": "+33 4 56 78 90 12", "city": "Lyon", "country": "France"},
]


def find_person(people: list[dict[str, Any]], *, email: str | None = None, first_name: str | None = None,
                last_name: str | None = None, domain: str | None = None) -> dict[str, Any] | None:
    """By email, else by first name + last name + company domain (case-insensitive)."""
    def same(a: Any, b: Any) -> bool:
        return isinstance(a, str) and isinstance(b, str) and a.strip().lower() == b.strip().lower()

    if email:
        return next((p for p in people if same(p.get("email"), email)), None)
    if first_name and last_name and domain:
        domain = domain.lower().removeprefix("https://").removeprefix("http://").removeprefix("www.").strip("/")
        return next((p for p in people if same(p.get("first_name"), first_name) and same(p.get("last_name"), last_name)
                     and same(p.get("domain"), domain)), None)
    return None
