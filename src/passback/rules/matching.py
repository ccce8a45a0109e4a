"""Which destination section, student and category a source one is: pure, no I/O.

Districts' ids rarely coincide: a Canvas section's SIS id may be ``S-12345-2026`` where
PowerSchool's section is ``12345``, a student's SIS id may carry a prefix the student
number lacks. A :class:`MatchRule` (one per kind, per connection pair) says which field
of the source item is read, what is cut from it (a prefix, a suffix, a regular
expression whose one group is kept) and which field of the destination item the result
must equal. A hand override names the destination item of one source item outright and
beats the rule. The defaults are what passback always did: a section's SIS id is the
destination section id, a student's SIS id is the destination student number, a
category's import link (Canvas ``sis_source_id``) is the destination category id.

Categories are also mapped by hand per course (``passback categories map``); such a
mapping beats the category rule the way an override beats the section and student rules.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from passback.model import Category, DestinationCategory, Section, Student

SECTION, STUDENT, CATEGORY = "section", "student", "category"
KINDS = (SECTION, STUDENT, CATEGORY)

# The fields a rule may read on each side. A destination section can only be found by its
# id (the destination is asked for the sections it is given), students by their number
# (what an LMS SIS id usually carries) or their id, categories by id or by name.
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    SECTION: ("sis_id", "id", "name"),
    STUDENT: ("sis_id", "id"),
    CATEGORY: ("ref", "id", "name"),
}
DEST_FIELDS: dict[str, tuple[str, ...]] = {
    SECTION: ("id",),
    STUDENT: ("number", "id"),
    CATEGORY: ("id", "name"),
}
DEFAULT_SOURCE_FIELD = {SECTION: "sis_id", STUDENT: "sis_id", CATEGORY: "ref"}
DEFAULT_DEST_FIELD = {SECTION: "id", STUDENT: "number", CATEGORY: "id"}


class MatchRuleError(ValueError):
    """A rule that cannot be used as given; the message says what to change."""


@dataclass(frozen=True)
class MatchRule:
    """How the items of one kind match: source field, what is cut from it, destination field.

    The source value is stripped of surrounding spaces, then of ``strip_prefix`` and
    ``strip_suffix`` where it has them, then ``pattern`` (a regular expression, searched)
    is applied: its one group, or the whole match when it has none, is the key. A value
    the pattern does not match has no key: the item is unmatched.
    """

    kind: str
    source_field: str = ""
    dest_field: str = ""
    pattern: str | None = None
    strip_prefix: str = ""
    strip_suffix: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MatchRuleError(f"Unknown kind {self.kind!r}; say one of: {', '.join(KINDS)}.")
        if not self.source_field:
            object.__setattr__(self, "source_field", DEFAULT_SOURCE_FIELD[self.kind])
        if not self.dest_field:
            object.__setattr__(self, "dest_field", DEFAULT_DEST_FIELD[self.kind])
        if self.source_field not in SOURCE_FIELDS[self.kind]:
            raise MatchRuleError(f"A {self.kind} rule reads one of the source fields "
                                 f"{', '.join(SOURCE_FIELDS[self.kind])}, not {self.source_field!r}.")
        if self.dest_field not in DEST_FIELDS[self.kind]:
            raise MatchRuleError(f"A {self.kind} rule matches one of the destination fields "
                                 f"{', '.join(DEST_FIELDS[self.kind])}, not {self.dest_field!r}.")
        if self.pattern:
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise MatchRuleError(f"The pattern {self.pattern!r} is not a regular expression: {exc}.") from exc
            if groups > 1:
                raise MatchRuleError(f"The pattern {self.pattern!r} has {groups} groups; "
                                     "keep one (the part that is the destination's value) or none.")

    @property
    def is_default(self) -> bool:
        return self == MatchRule(self.kind)

    def as_value(self) -> dict[str, Any]:
        return {"kind": self.kind, "source_field": self.source_field, "dest_field": self.dest_field,
                "pattern": self.pattern, "strip_prefix": self.strip_prefix, "strip_suffix": self.strip_suffix}

    def described(self) -> str:
        cuts = []
        if self.strip_prefix:
            cuts.append(f"without the prefix '{self.strip_prefix}'")
        if self.strip_suffix:
            cuts.append(f"without the suffix '{self.strip_suffix}'")
        if self.pattern:
            cuts.append(f"through the pattern '{self.pattern}'")
        return (f"source {self.kind} {self.source_field}" + (" " + ", ".join(cuts) if cuts else "")
                + f" = destination {self.kind} {self.dest_field}")


def key_of(rule: MatchRule, value: str | None) -> str | None:
    """The destination value a source value stands for under ``rule``; None: no match possible."""
    if value is None:
        return None
    key = str(value).strip()
    if rule.strip_prefix and key.startswith(rule.strip_prefix):
        key = key[len(rule.strip_prefix):]
    if rule.strip_suffix and key.endswith(rule.strip_suffix):
        key = key[: len(key) - len(rule.strip_suffix)]
    if rule.pattern:
        found = re.search(rule.pattern, key)
        if found is None:
            return None
        key = found.group(1) if found.re.groups else found.group(0)
    key = (key or "").strip()
    return key or None


def same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


@dataclass(frozen=True)
class Matching:
    """The matching of one connection pair (and one course, for its section overrides).

    ``rules`` by kind (a kind without one matches as passback always did); ``overrides``
    by kind, source id -> destination id, set by hand.
    """

    rules: Mapping[str, MatchRule] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def rule(self, kind: str) -> MatchRule:
        return self.rules.get(kind) or MatchRule(kind)

    def override(self, kind: str, source_id: str) -> str | None:
        return self.overrides.get(kind, {}).get(source_id)


DEFAULT = Matching()


def rule_from(stored: Mapping[str, Any]) -> MatchRule:
    """A rule from its stored fields (by name; an empty field is the kind's default)."""
    return MatchRule(kind=stored["kind"], source_field=stored.get("source_field") or "",
                     dest_field=stored.get("dest_field") or "", pattern=stored.get("pattern") or None,
                     strip_prefix=stored.get("strip_prefix") or "", strip_suffix=stored.get("strip_suffix") or "")


def matching_from(rules: Iterable[Mapping[str, Any]], overrides: Iterable[tuple[str, str, str]]) -> Matching:
    """A :class:`Matching` from stored rules and overrides given as (kind, source id, destination id)."""
    hand: dict[str, dict[str, str]] = {}
    for kind, source_id, dest_id in overrides:
        hand.setdefault(kind, {})[source_id] = dest_id
    return Matching(rules={r["kind"]: rule_from(r) for r in rules}, overrides=hand)


# --- sections ----------------------------------------------------------------------------------


def section_value(section: Section, field_name: str) -> str | None:
    return {"sis_id": section.sis_id, "id": section.source_id, "name": section.name}[field_name]


def wanted_section(section: Section, matching: Matching = DEFAULT) -> str | None:
    """The destination section id a source section is looked for as: the override, else the rule's key."""
    hand = matching.override(SECTION, section.source_id)
    if hand is not None:
        return hand
    rule = matching.rule(SECTION)
    return key_of(rule, section_value(section, rule.source_field))


def destination_section_ids(sections: Sequence[Section], matching: Matching = DEFAULT) -> list[str]:
    """The destination section ids to read for a course's sections, each once, in the sections' order."""
    wanted = (wanted_section(s, matching) for s in sections)
    return list(dict.fromkeys(w for w in wanted if w))


def match_sections(sections: Sequence[Section], dest_sections: Mapping[str, Any],
                   matching: Matching = DEFAULT) -> dict[str, str]:
    """Source section id -> destination section id, for the sections the destination holds."""
    found = {}
    for section in sections:
        wanted = wanted_section(section, matching)
        if wanted is not None and wanted in dest_sections:
            found[section.source_id] = wanted
    return found


# --- students ----------------------------------------------------------------------------------


def student_value(student: Student, field_name: str) -> str | None:
    return {"sis_id": student.sis_id, "id": student.source_id}[field_name]


def match_student(student: Student, dest_student_ids: Mapping[str, str], matching: Matching = DEFAULT,
                  known_ids: frozenset[str] | None = None) -> str | None:
    """The destination student id of a source student, or None.

    ``dest_student_ids`` is the destination's student number -> student id (the
    :class:`~passback.model.values.DestinationContext`'s ``student_ids``). An override is
    taken as it is: the roster check that follows tells whether the student is there.
    """
    hand = matching.override(STUDENT, student.source_id)
    if hand is not None:
        return hand
    rule = matching.rule(STUDENT)
    key = key_of(rule, student_value(student, rule.source_field))
    if key is None:
        return None
    if rule.dest_field == "number":
        return dest_student_ids.get(key)
    ids = known_ids if known_ids is not None else frozenset(dest_student_ids.values())
    return key if key in ids else None


def match_students(students: Sequence[Student], dest_student_ids: Mapping[str, str],
                   matching: Matching = DEFAULT) -> dict[str, str]:
    """Source student id -> destination student id, for the students that match.

    A destination student the rule matches to two source students (two users with one SIS
    id) is matched to neither: whose grades it holds cannot be told, and each would overwrite
    the other's (a hand override is taken as given).
    """
    known = frozenset(dest_student_ids.values())
    found, by_hand = {}, set()
    for student in students:
        dest = match_student(student, dest_student_ids, matching, known)
        if dest is not None:
            found[student.source_id] = dest
            if matching.override(STUDENT, student.source_id) is not None:
                by_hand.add(student.source_id)
    claimed = Counter(found.values())
    return {source: dest for source, dest in found.items() if source in by_hand or claimed[dest] == 1}


def unmatched_student(students: Sequence[Student], sis_id: str | None) -> str:
    """How an error names the destination student a source student has none of."""
    sharing = sum(1 for s in students if sis_id and s.sis_id == sis_id)
    if sharing > 1:
        return f"(SIS id {sis_id} is shared by {sharing} students of the course; none is matched)"
    return f"(no student with SIS id {sis_id})"


# --- categories ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryTarget:
    """Where a source category goes: a destination category id, or a name found in each section."""

    key: str
    dest_field: str = "id"  # "id" or "name"
    via: str = "rule"  # "mapping" (by hand), "import" (the default rule: the import link) or "rule"


def category_value(category: Category, field_name: str) -> str | None:
    return {"ref": category.destination_ref, "id": category.source_id, "name": category.name}[field_name]


def match_categories(categories: Sequence[Category], mappings: Mapping[str, str],
                     matching: Matching = DEFAULT) -> dict[str, CategoryTarget]:
    """Source category id -> its target: a saved mapping (by hand), else the category rule."""
    rule = matching.rule(CATEGORY)
    via = "import" if rule.is_default else "rule"
    targets = {}
    for category in categories:
        if category.source_id in mappings:
            targets[category.source_id] = CategoryTarget(mappings[category.source_id], "id", "mapping")
            continue
        key = key_of(rule, category_value(category, rule.source_field))
        if key is not None:
            targets[category.source_id] = CategoryTarget(key, rule.dest_field, via)
    return targets


def category_in_section(target: CategoryTarget | None,
                        section_categories: Sequence[DestinationCategory]) -> str | None:
    """The destination category id a target is in one destination section (active ones first)."""
    if target is None:
        return None
    if target.dest_field == "id":
        return target.key
    named = [c for c in section_categories if same_name(c.name, target.key)]
    named.sort(key=lambda c: not c.active)
    return named[0].dest_id if named else None


def category_in_every_section(target: CategoryTarget | None,
                              categories: Mapping[str, Sequence[DestinationCategory]]) -> bool:
    """Whether the target is an active category of every destination section given."""
    if target is None:
        return False
    for cats in categories.values():
        chosen = category_in_section(target, cats)
        if chosen not in {c.dest_id for c in cats if c.active}:
            return False
    return True
