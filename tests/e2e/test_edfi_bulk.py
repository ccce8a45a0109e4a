"""A state-reporting send larger than one store batch, on SQLite and on PostgreSQL.

The send records answers in batches while it goes on, from the sender's thread; this
checks that every record the ODS holds is in the identity map and the run history
exactly once, and that the next run has nothing to send.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from passback.emulators import edfi as edfi_emulator
from passback.sandbox.edfi_district import EdFiShape, default_preferences, generate
from passback.settings import Settings
from passback.connectors.csv_export.source import write_export
from passback.pipeline.edfi_sending import BATCH
from passback.services.statereport import report
from passback.store.connections import get_connection, save_connection
from passback.store.db import Store
from passback.store.history import get_run_items
from passback.store.identity import Pairing, load_identities
from passback.vault import load_key
from tests.conftest import ServedApp

GRADES = BATCH + 700


def test_a_send_larger_than_a_batch_is_recorded_once_per_record(store: Store, tmp_path: Path) -> None:
    state, grades = generate(EdFiShape(grades=GRADES))
    with ServedApp(edfi_emulator.create_app(state)) as ods:
        settings = Settings(data_dir=tmp_path, concurrency=8)
        key = load_key(settings)
        prefs = default_preferences()
        save_connection(store, key, name="state-edfi", kind="edfi", base_url=ods.url,
                        credentials={"client_id": "sandbox-edfi", "client_secret": "sandbox-edfi-secret"},
                        settings={"grades": {"grade_types": prefs.grade_types,
                                             "grading_periods": {k: list(v) for k, v in prefs.grading_periods.items()},
                                             "state_codes": prefs.state_codes,
                                             "school_years": sorted(prefs.school_years)}})
        export = tmp_path / "grades.csv"
        save_connection(store, key, name="sis-export", kind="csv", base_url=str(export), credentials={})
        write_export(export, grades)

        first = asyncio.run(report(store, settings, "sis-export", "state-edfi"))

        in_ods = ods.state["resources"]["grades"]
        assert first.status == "succeeded"
        assert first.counts["created"] == len(in_ods) == GRADES
        pairing = Pairing(get_connection(store, key, "sis-export").id, get_connection(store, key, "state-edfi").id)
        identities = load_identities(store, pairing, ("edfi-grade",))
        assert sorted(row.dest_id for row in identities.values()) == sorted(in_ods)
        by_student = {(r["studentSectionAssociationReference"]["studentUniqueId"],
                       r["studentSectionAssociationReference"]["sectionIdentifier"]): r for r in in_ods.values()}
        for grade in grades:
            record = by_student[(grade.student_id, grade.section_id)]
            assert record["letterGradeEarned"] == str(prefs.state_codes[grade.letter])
        created = [i for i in get_run_items(store, first.run_id) if i["outcome"] == "created"]
        assert sorted(i["dest_id"] for i in created) == sorted(in_ods)

        again = asyncio.run(report(store, settings, "sis-export", "state-edfi"))
        assert again.status == "nothing to do"
        assert len(ods.state["resources"]["grades"]) == GRADES
