"""The stored records (`graphbuild.records`): what round-trips, what is refused, and what the
output digest covers."""

from __future__ import annotations

import copy

import pytest

from graphbuild.records import (
    FORMAT,
    ActionResult,
    OtherFormat,
    OutputBlob,
    RecordError,
    RunEntry,
    RunRecord,
    Status,
)

SHA, LOG = "ab" * 32, "cd" * 32


def result(**fields) -> ActionResult:
    return ActionResult.create(Status.OK, "//p:t#gen", outputs={"out.txt": OutputBlob(SHA, 6, True)},
                               metadata={"tests": 3}, **{"summary": "3 passed", "log": LOG, "duration": 0.5,
                                                         "created": 1.0, **fields})


def test_a_result_round_trips_through_its_serialised_form():
    stored = result()
    again = ActionResult.from_json(copy.deepcopy(stored.to_json()))
    assert again == stored
    assert again.outputs["out.txt"].sha256 == SHA and again.ok
    assert again.blob_refs() == [(SHA, 6), (LOG, None)]
    assert again.digest_matches()


def test_the_output_digest_covers_outputs_and_metadata_not_the_summary_or_the_log():
    base = result().output_digest()
    assert ActionResult.create(Status.OK, "//other:x#y", outputs={"out.txt": (SHA, 6, True)},
                               metadata={"tests": 3}).output_digest() == base  # node, summary, log: not keyed
    assert result(summary="other words").output_digest() == base
    changed_meta = ActionResult.create(Status.OK, "//p:t#gen", outputs={"out.txt": (SHA, 6, True)},
                                       metadata={"tests": 4})
    changed_blob = ActionResult.create(Status.OK, "//p:t#gen", outputs={"out.txt": ("ee" * 32, 6, True)},
                                       metadata={"tests": 3})
    renamed = ActionResult.create(Status.OK, "//p:t#gen", outputs={"other.txt": (SHA, 6, True)},
                                  metadata={"tests": 3})
    assert len({base, changed_meta.output_digest(), changed_blob.output_digest(), renamed.output_digest()}) == 4


def test_a_forged_digest_is_told_from_a_true_one():
    forged = {**result().to_json(), "metadata": {"tests": 300}}
    assert not ActionResult.from_json(forged).digest_matches()


@pytest.mark.parametrize(("field", "value"), [
    ("status", "maybe"), ("outputs", {"out.txt": ["short", 6, False]}), ("outputs", {"out.txt": [SHA, -1, False]}),
    ("outputs", {"out.txt": [SHA, "6", False]}), ("outputs", {"out.txt": [SHA, 6]}), ("outputs", []),
    ("metadata", []), ("log", "../../etc/passwd"), ("node", None), ("summary", 3), ("duration", "slow"),
])
def test_a_malformed_record_is_refused(field, value):
    data = {**result().to_json(), field: value}
    with pytest.raises(RecordError):
        ActionResult.from_json(data)


def test_a_record_of_another_format_is_told_apart_from_damage():
    older = {k: v for k, v in result().to_json().items() if k != "format"}
    with pytest.raises(OtherFormat):
        ActionResult.from_json(older)
    with pytest.raises(OtherFormat):
        ActionResult.from_json({**result().to_json(), "format": FORMAT + 1})
    with pytest.raises(RecordError):
        ActionResult.from_json("not a record")


def test_a_run_round_trips_and_older_rows_still_read():
    run = RunRecord(time=2.0, phase="test", nodes={
        "//p:t#gen": RunEntry("k1", "ran"),
        "//p:u#gen": RunEntry("k2", "cached", cached_from="//p:t#gen", source="local"),
        "//p:v#push": RunEntry(None, "skipped", cacheable=False),
    })
    assert RunRecord.from_json(copy.deepcopy(run.to_json())) == run
    older = {"time": 1.0, "phase": "build", "nodes": {"//p:t#gen": ["k1", "cached", None]}}
    assert RunRecord.from_json(older).nodes["//p:t#gen"] == RunEntry("k1", "cached", None, None, True)
    assert run.nodes["//p:u#gen"].served_by_other and not run.nodes["//p:t#gen"].served_by_other
    with pytest.raises(RecordError):
        RunRecord.from_json({"nodes": {"x": "not a row"}})
