"""The error catalogue: every reason an item does not sync, with its meaning and its fix.

Seed 000's nine Grade Sync errors keep their number (``seed_error``) and their wording;
the assignment requirements of the same page have entries of their own. Codes are
stable: the run history stores them, the dashboard and ``passback errors`` read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CatalogueEntry:
    code: str
    outcome: str  # "error" or "skipped"
    message: str  # a template over the item's context
    meaning: str
    fix: str
    seed_error: int | None = None

    def render(self, **context: Any) -> str:
        return spoken(self.message.format_map(_Lenient(context)), context.get("source_kind"))

    def render_fix(self, **context: Any) -> str:
        return spoken(self.fix.format_map(_Lenient(context)), context.get("source_kind"))

    def render_meaning(self, **context: Any) -> str:
        return spoken(self.meaning, context.get("source_kind"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


VOCABULARY: dict[str, tuple[tuple[str, str], ...]] = {
    # Seed 000 speaks Canvas; a Schoology teacher reads Schoology's words for the same things.
    "schoology": (
        ("imported/synced assignment group", "mapped grading category"),
        ("imported/synced category", "mapped grading category"),
        ("imported assignment group", "mapped grading category"),
        ("imported assignment category", "mapped grading category"),
        ("Re-import Assignment Groups", "Map the grading categories again (passback categories map)"),
        ("Assignment Groups", "grading categories"),
        ("assignment groups", "grading categories"),
        ("assignment group", "grading category"),
        ("assignment category", "grading category"),
        ("set to Post to SIS", "set to sync"),
        ("Post to SIS", "the sync switch"),
        ("Sync to SIS", "the sync switch"),
        ("Canvas differentiated assignment functionality", "items assigned to individual students in Schoology"),
        ("Canvas submission", "Schoology grade"),
        ("Canvas", "Schoology"),
    ),
    # A OneRoster CSV export has no assignment groups and no sync switch: lineItems carry a
    # categorySourcedId, and what the export holds is what the SIS is meant to receive.
    "oneroster_csv": (
        ("an imported/synced assignment group", "a category of categories.csv"),
        ("an imported/synced category", "a category of categories.csv"),
        ("an imported assignment group", "a category of categories.csv"),
        ("an imported assignment category", "a category of categories.csv"),
        ("an assignment category", "a category"),
        ("imported/synced assignment group", "category of categories.csv"),
        ("imported/synced category", "category of categories.csv"),
        ("imported assignment group", "category of categories.csv"),
        ("imported assignment category", "category of categories.csv"),
        ("Re-import Assignment Groups", "Give the lineItem the categorySourcedId of one of the teacher's categories"),
        ("set to Post to SIS", "in the export"),
        ("Disable Sync to SIS for that assignment", "Leave that lineItem out of the export"),
        ("Disable Sync to SIS for this assignment", "Leave this lineItem out of the export"),
        ("disable Sync to SIS for the assignment", "leave its lineItem out of the export"),
        ("Sync to SIS is enabled for an assignment", "The export holds a lineItem"),
        ("Assignment Groups", "categories"),
        ("assignment groups", "categories"),
        ("assignment group", "category"),
        ("assignment category", "category"),
        ("Canvas submission", "result"),
        ('a points possible of "none"', "a blank resultValueMax"),
        ('to be out of 0 points instead of "none"', "to have a resultValueMax (0 or more)"),
        ("Search for student_", "Search for student "),
        ("from the People page in your course", "in users.csv"),
        ('Add "/assignments/', 'Look for lineItem "'),
        ('" to the end of your course URL', '" in lineItems.csv'),
        ("Canvas", "the OneRoster export"),
    ),
}


def spoken(text: str, source_kind: str | None) -> str:
    """The text in the words of the source the teacher grades in (Canvas's words are the seed's)."""
    for said, meant in VOCABULARY.get(source_kind or "", ()):
        text = text.replace(said, meant)
    return text[:1].upper() + text[1:] if source_kind in VOCABULARY else text


class _Lenient(dict):  # type: ignore[type-arg]
    """Leaves an unknown placeholder visible instead of failing the whole run."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


_ENTRIES = [
    # --- seed 000, "Troubleshooting Errors", errors 1 to 9 ---------------------------
    CatalogueEntry(
        code="not-in-imported-group",
        seed_error=1,
        outcome="error",
        message=(
            "Assignment {assignment_name} is not in an imported/synced assignment group in "
            "Canvas. Please ensure all assignments set to Post to SIS are in an "
            "imported/synced category."
        ),
        meaning="Sync to SIS is enabled for an assignment that is not in an assignment category.",
        fix=(
            "Disable Sync to SIS for that assignment or move it to an imported assignment "
            "category."
        ),
    ),
    CatalogueEntry(
        code="duplicate-destination-assignment",
        seed_error=2,
        outcome="error",
        message=(
            "An assignment already exists with this name {assignment_name} and due date "
            "{due_date} for one or more classes."
        ),
        meaning=(
            "An assignment was created manually in PowerTeacher Pro with the same name as the "
            "assignment in Canvas."
        ),
        fix="Delete the assignment(s) in PowerTeacher Pro and then run another sync.",
    ),
    CatalogueEntry(
        code="student-not-graded",
        seed_error=3,
        outcome="skipped",
        message=(
            "Cannot export Canvas submission in section {section_id} assignment "
            "{assignment_id} for student student_{student_id}"
        ),
        meaning=(
            "A specific assignment for a specific student does not have a grade to send to "
            "PowerTeacher Pro."
        ),
        fix=(
            "Find the student. Search for student_{student_id} from the People page in your "
            "course. Find the assignment. Add \"/assignments/{assignment_id}\" to the end of "
            "your course URL. Grade the assignment for that student and sync grades again."
        ),
    ),
    CatalogueEntry(
        code="grading-category-missing",
        seed_error=4,
        outcome="error",
        message="Grading Category missing for assignment {assignment_name}",
        meaning="The assignment is outside of an imported assignment group.",
        fix=(
            "Move the assignment into an imported assignment group and sync again, or disable "
            "Sync to SIS for the assignment."
        ),
    ),
    CatalogueEntry(
        code="points-possible-none",
        seed_error=5,
        outcome="error",
        message="Score entry points is required",
        meaning='One or more assignments in Canvas have a points possible of "none".',
        fix='Change assignment(s) in Canvas to be out of 0 points instead of "none".',
    ),
    CatalogueEntry(
        code="student-not-in-destination-section",
        seed_error=6,
        outcome="error",
        message=(
            "Student.id {dest_student_id} does not have an AssignmentStudentAssociation in "
            "AssignmentSection.Id {dest_assignment_section_id}"
        ),
        meaning=(
            "The student is incorrectly enrolled. It could be a manual enrollment or the "
            "student is enrolled in the wrong section."
        ),
        fix=(
            "Submit a Help Desk ticket. Include in the ticket: the student (student_"
            "{student_id}), the course, the section ({section_id}) and the assignment "
            "({assignment_id})."
        ),
    ),
    CatalogueEntry(
        code="category-not-valid-for-section",
        seed_error=7,
        outcome="error",
        message="TeacherCategoryID is not active or does not belong to lead teacher for Section",
        meaning="Assignment categories do not match across all sections in PowerTeacher Pro.",
        fix="Re-import Assignment Groups and try to sync again.",
    ),
    CatalogueEntry(
        code="score-removed-after-grading",
        seed_error=8,
        outcome="error",
        message=(
            "Unable to post score for student (student_{student_id}) in assignment "
            "({assignment_id}). Score has been removed after original grading took place."
        ),
        meaning="The student submitted an assignment again that has not been re-graded.",
        fix="Regrade the assignment and sync again.",
    ),
    CatalogueEntry(
        code="name-over-destination-limit",
        seed_error=9,
        outcome="error",
        message=(
            'Unable to create assignment {assignment_name}. "Value may not contain more than '
            '50 character(s)."'
        ),
        meaning="The name of the assignment is to long.",
        fix="Edit the name of the assignment to 50 or less characters.",
    ),
    # --- seed 000, "Assignment Requirements" ----------------------------------------
    CatalogueEntry(
        code="due-date-missing",
        outcome="error",
        message="Assignment {assignment_name} has no due date.",
        meaning="Due dates are required for assignment and grade passback.",
        fix="Give the assignment a due date within the course term and sync again.",
    ),
    CatalogueEntry(
        code="due-date-outside-term",
        outcome="error",
        message=(
            "The due date {due_date} of assignment {assignment_name} is outside the course "
            "term ({term_start} to {term_end})."
        ),
        meaning="The due date must be within range of the course term.",
        fix="Move the due date inside the course term and sync again.",
    ),
    CatalogueEntry(
        code="name-missing",
        outcome="error",
        message="Assignment {assignment_id} has no name.",
        meaning="The assignment's name is blank; the destination requires a name for every assignment.",
        fix=(
            'Give the assignment a name in Canvas (add "/assignments/{assignment_id}" to the end of your '
            "course URL) and sync again."
        ),
    ),
    CatalogueEntry(
        code="points-possible-negative",
        outcome="error",
        message="Assignment {assignment_name} is out of {points_possible} points; points possible cannot be negative.",
        meaning="An assignment is out of 0 points or more; a negative points possible cannot be sent.",
        fix="Change the assignment in Canvas to be out of 0 points or more and sync again.",
    ),
    CatalogueEntry(
        code="name-over-district-limit",
        outcome="error",
        message="Name is too long, must be under {limit_plus_one} characters",
        meaning=(
            "The assignment title is longer than the district allows ({limit} characters)."
        ),
        fix="Shorten the assignment name to {limit} characters or fewer and sync again.",
    ),
    CatalogueEntry(
        code="assigned-to-individuals",
        outcome="error",
        message=(
            "Assignment {assignment_name} is assigned to individual students. PowerSchool "
            "does not support Canvas differentiated assignment functionality."
        ),
        meaning=(
            'Assignments must be assigned to "Everyone" or a specific section, not individual '
            "students."
        ),
        fix='Set "Assign to" to Everyone or to whole sections, or disable Sync to SIS.',
    ),
    CatalogueEntry(
        code="mastery-paths",
        outcome="error",
        message="Mastery Paths assignment {assignment_name} will not sync to PowerTeacher Pro.",
        meaning="Mastery Paths assignments will not sync to PowerTeacher Pro.",
        fix="Disable Sync to SIS for this assignment and enter its grades by hand.",
    ),
    CatalogueEntry(
        code="sync-off",
        outcome="skipped",
        message="Sync to SIS is off for assignment {assignment_name}.",
        meaning="The teacher has not chosen to send this assignment.",
        fix="Turn on Sync to SIS for the assignment if it should be sent.",
    ),
    CatalogueEntry(
        code="unpublished",
        outcome="skipped",
        message="Assignment {assignment_name} is not published.",
        meaning="Unpublished assignments are not sent to the gradebook of record.",
        fix="Publish the assignment when it is ready and sync again.",
    ),
    CatalogueEntry(
        code="section-not-in-destination",
        outcome="error",
        message=(
            "Section {section_name} has no matching section in the destination "
            "(SIS id {section_sis_id})."
        ),
        meaning="The course section is not linked to a section of the gradebook of record.",
        fix=(
            "Check the section's SIS id in the source against the destination's sections. Where "
            "the district's ids differ, set a rule (`passback match rule section --pattern ...`) "
            "or match it by hand (`passback match section --course {course_id} --source-section "
            "SECTION --to DEST_SECTION`); `passback check --course {course_id}` lists what is "
            "unmatched. A manual course cannot sync (Grade Passback only works with SIS courses)."
        ),
    ),
    CatalogueEntry(
        code="missing-not-sent",
        outcome="skipped",
        message=(
            "Submission of student_{student_id} for assignment {assignment_id} is missing: "
            "nothing is sent, PowerTeacher Pro shows a blank."
        ),
        meaning="Missing does not pass, displays as blank (never as a zero).",
        fix="Grade or excuse the submission in the source if the destination should hold a value.",
    ),
    CatalogueEntry(
        code="destination-assignment-missing",
        outcome="skipped",
        message=(
            "The destination assignment {dest_assignment_id} linked to {assignment_name} is no "
            "longer there; the link was removed."
        ),
        meaning=(
            "The assignment was deleted in the destination after passback created or linked it "
            "(this is also how a wrong link is undone)."
        ),
        fix=(
            "Sync again to create it anew, or link it to the right destination assignment first "
            "with `passback link`."
        ),
    ),
    CatalogueEntry(
        code="source-grade-unreadable",
        outcome="error",
        message="The grade of student {student_id} for assignment {assignment_id} could not be read: {reason}",
        meaning=(
            "The source holds a value passback does not know the meaning of (for Schoology, a grade "
            "exception other than 1 excused or 2 incomplete); it is neither sent nor cleared."
        ),
        fix=(
            "Open the grade in the source and enter a score, or mark it excused or incomplete; then "
            "sync again."
        ),
    ),
    CatalogueEntry(
        code="source-item-unsupported",
        outcome="skipped",
        message="{assignment_name} could not be read: {reason}",
        meaning=(
            "The source lists a gradebook item of a type its API documentation does not describe; "
            "it is not sent."
        ),
        fix=(
            "Enter its grades in the destination by hand, or recreate it as an assignment, "
            "assessment or discussion."
        ),
    ),
    CatalogueEntry(
        code="source-row-unreadable",
        outcome="error",
        message="{file} line {line}: {problem}",
        meaning=(
            "A row of a file-based source (a OneRoster CSV export), or of an API source's listing (its "
            "line is its place in the listing), could not be read: a value the format does not allow, a "
            "reference to a record the source does not hold, a record listed twice with different values, "
            "or a row missing a field. That row is neither sent nor cleared; every other row was read and synced."
        ),
        fix="{fix}",
    ),
    CatalogueEntry(
        code="assignment-linked-by-another-run",
        outcome="skipped",
        message=(
            "{assignment_name} was not sent: another run linked it to the destination while this "
            "run was planning."
        ),
        meaning=(
            "Two runs of the same course met (for example a schedule and a teacher's sync now); "
            "the other run owns this assignment's link, and this run sent nothing for it, so "
            "nothing was doubled."
        ),
        fix="Nothing to fix: the next sync sends whatever is still different.",
    ),
    CatalogueEntry(
        code="term-closed",
        outcome="error",
        message="The term {term_name} ended on {term_end}; nothing is written after a term ends.",
        meaning="The district does not allow grade changes to be sent after the term ends.",
        fix="Enter the grades in PowerTeacher Pro by hand, or ask the district to reopen the term.",
    ),
    CatalogueEntry(
        code="destination-changed-by-hand",
        outcome="error",
        message=(
            "The score of student_{student_id} in {assignment_name} was changed in the destination "
            "to {held} since passback wrote {last_written}; the source has {source_value}."
        ),
        meaning="Someone edited this grade in the gradebook of record; passback will not overwrite it silently.",
        fix=(
            "Keep the destination's grade (change it in the source too), or sync with --overwrite "
            "to send the source's grade."
        ),
    ),
    CatalogueEntry(
        code="destination-auth",
        outcome="error",
        message="The destination refused passback's credentials: {detail}",
        meaning="The plugin credentials are wrong, revoked or expired.",
        fix="Check the plugin's client id and secret and save the connection again.",
    ),
    CatalogueEntry(
        code="destination-scope-missing",
        outcome="error",
        message="The destination refused the request: passback's credentials lack a permission it needs: {detail}",
        meaning=(
            "The OneRoster server answered 403: the client id was not granted the scopes passback asks for "
            "(roster-core.readonly, gradebook.readonly, gradebook.createput, gradebook.delete)."
        ),
        fix="Ask the SIS administrator to grant those scopes to passback's client id, then sync again.",
    ),
    CatalogueEntry(
        code="destination-rejected",
        outcome="error",
        message="The destination refused the write: {detail}",
        meaning="The destination answered with an error passback has no entry for.",
        fix="Read the destination's message; fix the data it names and sync again.",
    ),
    CatalogueEntry(
        code="destination-unreachable",
        outcome="error",
        message="The destination could not be reached after retries: {detail}",
        meaning="The write was not confirmed; nothing was recorded as written.",
        fix="Check the destination's availability and sync again; nothing will be doubled.",
    ),
]

# --- seed 003, Ed-Fi Grades ----------------------------------------------------------------
_ENTRIES += [
    CatalogueEntry(
        code="edfi-missing-student-section-association",
        outcome="error",
        message=(
            "Student ({student_name}, {student_id}) does not have a Student Section Association "
            "record for the course ({course_number} {course_name}).  This record must exist before "
            "Grades can be sent."
        ),
        meaning="The state does not know the student is in this section, so it cannot accept a grade for it.",
        fix="Send the student's section enrollment (StudentSectionAssociation) to Ed-Fi, then sync the grade again.",
    ),
    CatalogueEntry(
        code="edfi-standard",
        outcome="skipped",
        message="Grade {posted_id} is on a standard; standards do not report to Ed-Fi.",
        meaning="Standards grades stay in the SIS.",
        fix="Nothing to do.",
    ),
    CatalogueEntry(
        code="edfi-course-inactive",
        outcome="skipped",
        message="Course {course_number} {course_name} is marked inactive; its grades are not reported.",
        meaning="Do not report if the Course is marked as Inactive.",
        fix="Mark the course active if its grades should reach the state.",
    ),
    CatalogueEntry(
        code="edfi-excluded",
        outcome="skipped",
        message="Grade {posted_id} is excluded from state reporting ({why}).",
        meaning="The School or Calendar Exclude box, or the course's State Report Exclude box, is checked.",
        fix="Clear the exclude box if the grade should be reported; a change of State Report Exclude sends or deletes it.",
    ),
    CatalogueEntry(
        code="edfi-grading-task-not-mapped",
        outcome="skipped",
        message="Grading task {grading_task} is not mapped to an Ed-Fi Grade Type; its grades are not reported.",
        meaning="Only grades posted to a grading task mapped to an Ed-Fi Grade Type are sent.",
        fix="Map the grading task: passback edfi map task TASK --grade-type DESCRIPTOR --period DESCRIPTOR; then resync.",
    ),
    CatalogueEntry(
        code="edfi-grading-period-not-mapped",
        outcome="error",
        message="Grading task {grading_task} is not mapped to a Grading Period.",
        meaning="The Grading Task must be mapped to a Grading Period to report.",
        fix="Map the grading task to one or more grading period descriptors, then resync.",
    ),
    CatalogueEntry(
        code="edfi-no-overlapping-grading-period",
        outcome="error",
        message=(
            "No grading period of school {school_id} in {school_year} ends between {term_start} and "
            "{term_end} (the term {term_name} the grade was posted to)."
        ),
        meaning="A grade reports to every grading period whose end date falls within the posted term.",
        fix="Check the grading periods in Ed-Fi and the term the grade was posted to.",
    ),
    CatalogueEntry(
        code="edfi-year-not-configured",
        outcome="skipped",
        message="School year {school_year} has no valid Ed-Fi configuration.",
        meaning="Data will only send for the years that have valid configuration.",
        fix="Configure the Ed-Fi connection for that school year.",
    ),
    CatalogueEntry(
        code="edfi-resource-off",
        outcome="skipped",
        message="The Grades resource is toggled off: {detail}",
        meaning="When the resource is off, sent data stays in the ODS, nothing new is sent, and deletes wait for a resync.",
        fix="passback edfi toggle on, then resync.",
    ),
    CatalogueEntry(
        code="edfi-duplicate-natural-key",
        outcome="error",
        message=(
            "Grade {posted_id} gives the same Ed-Fi Grade as grade {holder} (student {student_id}, section "
            "{section_id}, grade type {grade_type}, grading period {grading_period}); {holder} keeps the record "
            "and {posted_id} is not sent."
        ),
        meaning=(
            "An Ed-Fi Grade is identified by its grade type, grading period and student section association, "
            "so the two grades would overwrite each other in the ODS. The grade already reported keeps the "
            "record (when neither is, the one earlier in the export); the other waits and is never sent over it, "
            "and deleting either one never deletes the other's record."
        ),
        fix=(
            "Map the two grading tasks to different grade types or grading periods, or remove the posted grade "
            "that should not count; the waiting grade is sent by the next sync once it is alone."
        ),
    ),
    CatalogueEntry(
        code="edfi-not-final-grade",
        outcome="skipped",
        message=(
            "Grading task {grading_task} is mapped to grade type {grade_type}; only the final grade "
            "({final_grade_type}, 'FG') is reported to Ed-Fi."
        ),
        meaning="Always report 'FG' (Final Grade): only a grading task mapped to the 'FG' grade type reports.",
        fix=(
            "Map the course's final, state-reported grading task to the 'FG' grade type (passback edfi map task "
            "TASK --grade-type FG-DESCRIPTOR --period DESCRIPTOR); grades on other tasks stay in the SIS."
        ),
    ),
    CatalogueEntry(
        code="edfi-task-not-final",
        outcome="skipped",
        message="Grading task {grading_task} is not marked 'final' and 'state reported'; its grades are not reported.",
        meaning="A grading task that is marked as 'final' and 'state reported' must exist on the course.",
        fix=(
            "If this is the course's final grade for the state, mark the task: passback edfi map task TASK "
            "--grade-type FG-DESCRIPTOR --period DESCRIPTOR --final --state-reported; then sync."
        ),
    ),
    CatalogueEntry(
        code="edfi-unresolved-reference",
        outcome="error",
        message="The ODS refused the grade: {detail}",
        meaning="The grading period or the student section association it refers to does not exist in the ODS.",
        fix="Send the referenced record to Ed-Fi first, then sync the grade again.",
    ),
]

CATALOGUE: dict[str, CatalogueEntry] = {entry.code: entry for entry in _ENTRIES}


def entry(code: str) -> CatalogueEntry:
    return CATALOGUE[code]


def by_seed_error(number: int) -> CatalogueEntry:
    for candidate in _ENTRIES:
        if candidate.seed_error == number:
            return candidate
    raise KeyError(number)
