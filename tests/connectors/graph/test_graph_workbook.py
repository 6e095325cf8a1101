"""GraphWorkbook against the emulator: short sessions, one rows/add per burst, read-back after
an unclear append, locks, the If-Match file mode, and what ``check`` says."""

from __future__ import annotations

import io
import threading
from datetime import datetime
from pathlib import Path

import openpyxl
import openpyxl.worksheet.table
import pytest

from connectors.base import CellUpdate, TableSpec
from connectors.graph_http import Call
from service.errors import InputError, LockedError, PermanentError, TransientError
from tests.connectors.harness_graph import (
    CLIENT_ID,
    REGISTER_PATH,
    SECRET,
    SITE_HOST,
    SITE_PATH,
    GraphSetup,
    graph_setup,
    read_register,
)

HEADERS = ["Reference", "Recorded at", "Summary", "Status", "Source key"]
TABLE = "Concerns"


def make(tmp_path: Path, request: pytest.FixtureRequest, mode: str = "workbook") -> GraphSetup:
    setup = graph_setup(tmp_path, request, mode=mode, site=True)
    setup.put_workbook({TABLE: (HEADERS, [["PRV-2026-0001", None, "First", "Open", "mail:a"]])})
    return setup


@pytest.fixture
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSetup:
    return make(tmp_path, request)


@pytest.fixture
def file_setup(tmp_path: Path, request: pytest.FixtureRequest) -> GraphSetup:
    return make(tmp_path, request, mode="file")


def rows(n: int, start: int = 2) -> list[dict[str, object]]:
    return [
        {"Reference": f"PRV-2026-{k:04d}", "Summary": f"Concern {k}", "Source key": f"mail:{k}"}
        for k in range(start, start + n)
    ]


def keys(setup: GraphSetup) -> list[object]:
    return [r["Source key"] for r in read_register(setup)]


def session_of(recorded: object) -> str:
    headers = getattr(recorded, "headers", {})
    return str({k.lower(): v for k, v in headers.items()}["workbook-session-id"])


def count(setup: GraphSetup, method: str, pattern: str) -> int:
    return int(setup.emu.count_requests(method, pattern))


# ---------------------------------------------------------------------------- workbook mode


def test_a_burst_is_one_rows_add_in_one_short_session(setup: GraphSetup) -> None:
    setup.workbook().append_rows(TABLE, rows(20))

    assert keys(setup) == ["mail:a"] + [f"mail:{k}" for k in range(2, 22)]
    assert count(setup, "POST", r"/rows/add$") == 1
    assert count(setup, "POST", r"/createSession$") == 1
    assert count(setup, "POST", r"/closeSession$") == 1
    (add,) = [r for r in setup.emu.requests if r.path.endswith("/rows/add")]
    session_header = {k.lower(): v for k, v in add.headers.items()}["workbook-session-id"]
    assert session_header


def test_a_cycle_shares_one_session_between_the_probe_and_every_write(
    setup: GraphSetup,
) -> None:
    setup.put_workbook(
        {TABLE: (HEADERS, []), "Chronology": (["Reference", "Event", "Service key"], [])}
    )
    book = setup.workbook()

    book.begin_cycle()
    assert book.writable() is None  # the probe opens the cycle's session …
    book.append_rows(TABLE, rows(2), key_column="Source key")
    book.append_rows(
        "Chronology",
        [
            {
                "Reference": "PRV-2026-0002",
                "Event": "Reported",
                "Service key": "PRV-2026-0002|reported",
            }
        ],
    )
    assert count(setup, "POST", r"/closeSession$") == 0  # … kept open for the writes
    book.end_cycle()

    assert keys(setup) == ["mail:2", "mail:3"]
    assert count(setup, "POST", r"/createSession$") == 1
    assert count(setup, "POST", r"/closeSession$") == 1
    adds = [r for r in setup.emu.requests if r.path.endswith("/rows/add")]
    sessions = {session_of(r) for r in adds}
    assert len(adds) == 2 and len(sessions) == 1

    book.append_rows(TABLE, rows(1, start=9))  # after the cycle: a short session of its own
    assert count(setup, "POST", r"/createSession$") == 2
    assert count(setup, "POST", r"/closeSession$") == 2


def test_a_cycle_session_that_expires_is_replaced_and_the_rows_added_once(
    setup: GraphSetup,
) -> None:
    book = setup.workbook()
    book.begin_cycle()
    assert book.writable() is None
    setup.emu.add_fault("POST", r"/rows/add$", 404, body=EXPIRED_SESSION)

    book.append_rows(TABLE, rows(2), key_column="Source key")
    book.end_cycle()

    assert keys(setup) == ["mail:a", "mail:2", "mail:3"]
    assert count(setup, "POST", r"/createSession$") == 2
    assert count(setup, "POST", r"/closeSession$") == 1  # the live one; the expired is gone


def test_a_later_cycle_reads_the_header_rows_with_its_session_and_sees_a_reordering(
    setup: GraphSetup,
) -> None:
    book = setup.workbook()
    book.begin_cycle()
    book.append_rows(TABLE, rows(1), key_column="Source key")
    book.end_cycle()
    # Between cycles a person moves the columns about (here: reverses them).
    setup.put_workbook({TABLE: (list(reversed(HEADERS)), [])})
    before = len(setup.emu.round_trips)

    book.begin_cycle()
    book.append_rows(
        TABLE,
        [{"Reference": "PRV-2026-0009", "Summary": "Text", "Source key": "form:9"}],
        key_column="Source key",
    )
    book.end_cycle()

    (row,) = read_register(setup)
    assert row["Reference"] == "PRV-2026-0009" and row["Source key"] == "form:9"
    assert row["Summary"] == "Text"
    # createSession + the header row in one $batch, rows/add, closeSession
    trips = setup.emu.round_trips[before:]
    assert [r.path.rsplit("/", 1)[-1] for r in trips] == ["$batch", "add", "closeSession"]
    assert count(setup, "GET", r"/headerRowRange$") == 2  # once in each cycle


def test_a_locked_file_in_a_cycle_keeps_no_session(setup: GraphSetup) -> None:
    setup.emu.set_file_locked(SITE_HOST, SITE_PATH, REGISTER_PATH, True)
    book = setup.workbook()
    book.begin_cycle()

    assert book.writable() is not None
    with pytest.raises(LockedError):
        book.append_rows(TABLE, rows(1))
    book.end_cycle()

    assert count(setup, "POST", r"/closeSession$") == 0
    assert keys(setup) == ["mail:a"]


def test_values_go_by_header_name_whatever_the_column_order(setup: GraphSetup) -> None:
    setup.put_workbook({TABLE: (list(reversed(HEADERS)), [])})

    setup.workbook().append_rows(
        TABLE, [{"Summary": "Text", "Reference": "PRV-2026-0009", "Source key": "form:9"}]
    )

    (row,) = read_register(setup)
    assert row == {
        "Source key": "form:9",
        "Status": None,
        "Summary": "Text",
        "Recorded at": None,
        "Reference": "PRV-2026-0009",
    }


def test_text_is_kept_as_text_and_dates_go_as_iso_text(setup: GraphSetup) -> None:
    when = datetime(2026, 2, 2, 9, 30)
    setup.workbook().append_rows(
        TABLE,
        [{"Reference": "PRV-2026-0002", "Summary": "=HYPERLINK(1)", "Recorded at": when}],
    )

    (add,) = [r for r in setup.emu.requests if r.path.endswith("/rows/add")]
    (values,) = add.json["values"]
    assert values[HEADERS.index("Summary")] == "'=HYPERLINK(1)"
    assert values[HEADERS.index("Recorded at")] == "2026-02-02 09:30:00"
    stored = read_register(setup)[1]
    assert stored["Summary"] == "=HYPERLINK(1)"
    assert stored["Recorded at"] == when


def test_a_504_after_the_rows_went_in_adds_them_exactly_once(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/rows/add$", 504, after_commit=True)

    setup.workbook().append_rows(TABLE, rows(3), key_column="Source key")

    assert keys(setup) == ["mail:a", "mail:2", "mail:3", "mail:4"]
    assert count(setup, "POST", r"/rows/add$") == 1  # read back, nothing left to add
    (settle,) = setup.sleeps.waits  # one short pause before reading back
    assert 0.5 <= settle <= 1.0


def test_a_504_before_the_rows_went_in_adds_them_after_reading_back(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/rows/add$", 504)

    setup.workbook().append_rows(TABLE, rows(2))  # the key column is found by its header

    assert keys(setup) == ["mail:a", "mail:2", "mail:3"]
    assert count(setup, "POST", r"/rows/add$") == 2


def test_a_503_without_retry_after_on_rows_add_is_unclear_and_read_back(setup: GraphSetup) -> None:
    # Only a 503 with Retry-After is a refusal (throttling); without one the gateway may have
    # passed the rows on before failing, as with a 502 or 504.
    setup.emu.add_fault("POST", r"/rows/add$", 503, after_commit=True)

    setup.workbook().append_rows(TABLE, rows(2), key_column="Source key")

    assert keys(setup) == ["mail:a", "mail:2", "mail:3"]


def test_a_dropped_connection_on_rows_add_reads_back_before_retrying(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/rows/add$", 0, after_commit=True)

    setup.workbook().append_rows(TABLE, rows(2))

    assert keys(setup) == ["mail:a", "mail:2", "mail:3"]


def test_throttled_rows_add_waits_and_adds_once(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/rows/add$", 429, headers={"Retry-After": "2.128"})

    setup.workbook().append_rows(TABLE, rows(1))

    assert keys(setup) == ["mail:a", "mail:2"]
    assert setup.sleeps.waits == [2.128]


def test_an_unclear_append_without_a_key_column_is_not_repeated(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, site=True)
    setup.put_workbook({"Notes": (["When", "Note"], [])})
    setup.emu.add_fault("POST", r"/rows/add$", 504, after_commit=True)

    with pytest.raises(Exception, match="no key column"):
        setup.workbook().append_rows("Notes", [{"Note": "one"}])

    assert count(setup, "POST", r"/rows/add$") == 1


def test_a_file_open_elsewhere_is_a_lock_and_writes_nothing(setup: GraphSetup) -> None:
    setup.emu.set_file_locked(SITE_HOST, SITE_PATH, REGISTER_PATH, True)
    book = setup.workbook()

    assert book.writable() is not None
    with pytest.raises(LockedError, match="stays pending"):
        book.append_rows(TABLE, rows(1))
    assert keys(setup) == ["mail:a"]

    setup.emu.set_file_locked(SITE_HOST, SITE_PATH, REGISTER_PATH, False)
    assert book.writable() is None
    book.append_rows(TABLE, rows(1))
    assert keys(setup) == ["mail:a", "mail:2"]


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "conflict", "innerError": {"code": "accessConflict"}}},
        {"error": {"code": "EditModeCannotAcquireLock", "message": "Someone is editing it."}},
    ],
)
def test_lock_errors_on_rows_add_leave_the_row_pending(setup: GraphSetup, body: dict) -> None:
    setup.emu.add_fault("POST", r"/rows/add$", 409, body=body)

    with pytest.raises(LockedError):
        setup.workbook().append_rows(TABLE, rows(1))

    assert keys(setup) == ["mail:a"]
    assert count(setup, "POST", r"/closeSession$") == 1  # the session is still closed


def test_one_request_at_a_time_per_workbook(setup: GraphSetup) -> None:
    setup.emu.latency = 0.02
    books = [setup.workbook(), setup.workbook()]
    threads = [
        threading.Thread(target=b.append_rows, args=(TABLE, rows(1, start=10 + n)))
        for n, b in enumerate(books)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sequence = [r.path.rsplit("/", 1)[-1] for r in setup.emu.requests if "/workbook/" in r.path]
    assert sequence == ["createSession", "headerRowRange", "add", "closeSession"] * 2
    assert sorted(keys(setup)) == ["mail:10", "mail:11", "mail:a"]


def test_update_cells_patches_one_cell_and_uploads_nothing(setup: GraphSetup) -> None:
    written = setup.workbook().update_cells(
        TABLE,
        [
            CellUpdate("Status", "Closed", 0, {"Reference": "PRV-2026-0001"}),  # filled: kept
            CellUpdate("Recorded at", datetime(2026, 3, 1, 8, 0), 0, {"Source key": "mail:a"}),
        ],
    )

    assert written == 1
    (patch,) = [r for r in setup.emu.requests if r.method == "PATCH"]
    assert patch.path.endswith("/range(address='B2')")
    assert count(setup, "PUT", "") == 0
    assert read_register(setup)[0]["Recorded at"] == datetime(2026, 3, 1, 8, 0)
    assert read_register(setup)[0]["Status"] == "Open"


def test_a_total_row_a_person_switched_on_is_not_read_as_a_concern(
    setup: GraphSetup, tmp_path: Path
) -> None:
    # Excel: Table Design > Total Row. Graph's table range includes it; it is not data.
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = TABLE
    sheet.append(HEADERS)
    sheet.append(["PRV-2026-0001", None, "First", "Open", "mail:a"])
    sheet.append(["PRV-2026-0002", None, "Second", "Open", "mail:b"])
    sheet.append(["Total", None, None, None, "=SUBTOTAL(103,[Source key])"])
    table = openpyxl.worksheet.table.Table(displayName=TABLE, ref="A1:E4")
    table.totalsRowCount = 1
    sheet.add_table(table)
    book.save(tmp_path / "totals.xlsx")
    setup.emu.put_file(SITE_HOST, SITE_PATH, REGISTER_PATH, (tmp_path / "totals.xlsx").read_bytes())
    workbook = setup.workbook()

    read = workbook.read_table(TABLE)

    assert [r["Reference"] for r in read.rows] == ["PRV-2026-0001", "PRV-2026-0002"]
    assert read.row_numbers == (2, 3)
    assert workbook.find_rows(TABLE, "Reference", ["Total"]) == {}


@pytest.mark.parametrize("mode", ["workbook", "file"])
def test_a_register_a_person_replaced_with_a_restored_copy_is_found_again(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    # The worker (``run``) keeps one workbook object for days. A person deletes the register
    # and uploads a restored copy under the same name: same path, new item id.
    setup = make(tmp_path, request, mode=mode)
    book = setup.workbook()
    book.append_rows(TABLE, rows(1), key_column="Source key")
    book.http.request("DELETE", book.item(), Call(what="a person"))
    setup.put_workbook({TABLE: (HEADERS, [["PRV-2026-0001", None, "First", "Open", "mail:a"]])})

    book.append_rows(TABLE, rows(1, start=3), key_column="Source key")

    assert [r["Source key"] for r in book.read_table(TABLE).rows] == ["mail:a", "mail:3"]
    assert book.writable() is None


def test_a_missing_table_names_the_tables_there(setup: GraphSetup) -> None:
    with pytest.raises(InputError, match=r"tables in it: Concerns"):
        setup.workbook().read_table("Referrals")


def test_a_missing_file_names_the_config_keys(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    setup = graph_setup(tmp_path, request, site=True)  # the site, but no file in it

    with pytest.raises(PermanentError, match="site_host, site_path and path"):
        setup.workbook().read_table(TABLE)


def test_no_site_grant_names_the_grant_call(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    setup = make(tmp_path, request)
    setup.emu.add_app(CLIENT_ID, secret=SECRET, grant_all_sites=False)

    lines = list(setup.workbook().checks())

    failed = [line for line in lines if not line.ok]
    assert failed[0].name == f"site {SITE_HOST}{SITE_PATH}"
    assert "POST /sites/{site-id}/permissions" in failed[0].detail


def test_check_says_which_mode_is_in_use(setup: GraphSetup) -> None:
    lines = {line.name: line for line in setup.workbook().checks()}

    mode = lines["mode for Concern register.xlsx"]
    assert mode.ok and mode.detail.startswith("workbook (Excel API")
    assert lines[f"site {SITE_HOST}{SITE_PATH}"].ok
    assert lines[f"file {REGISTER_PATH}"].ok


def test_check_tells_a_refusing_tenant_to_use_file_mode(setup: GraphSetup) -> None:
    setup.emu.refuse_workbook_api(True)

    lines = {line.name: line for line in setup.workbook().checks()}

    mode = lines["mode for Concern register.xlsx"]
    assert not mode.ok
    assert 'set mode = "file"' in mode.detail


# ---------------------------------------------------------------------------- file mode


def test_file_mode_works_where_the_workbook_api_is_refused(file_setup: GraphSetup) -> None:
    file_setup.emu.refuse_workbook_api(True)
    book = file_setup.workbook()

    book.append_rows(TABLE, rows(2))

    assert keys(file_setup) == ["mail:a", "mail:2", "mail:3"]
    assert book.find_rows(TABLE, "Source key", ["mail:3"]) == {"mail:3": 4}
    lines = {line.name: line for line in book.checks()}
    assert lines["mode for Concern register.xlsx"].detail.startswith("file (")


def test_file_mode_uploads_with_if_match_on_the_etag_just_read(file_setup: GraphSetup) -> None:
    etag = file_setup.emu.file_item(SITE_HOST, SITE_PATH, REGISTER_PATH)["eTag"]

    file_setup.workbook().append_rows(TABLE, rows(1))

    (start,) = [r for r in file_setup.emu.requests if r.path.endswith("/createUploadSession")]
    assert {k.lower(): v for k, v in start.headers.items()}["if-match"] == etag
    assert file_setup.emu.file_item(SITE_HOST, SITE_PATH, REGISTER_PATH)["eTag"] != etag


def test_file_mode_rereads_after_a_412(file_setup: GraphSetup) -> None:
    file_setup.emu.add_fault("POST", r"/createUploadSession$", 412)

    file_setup.workbook().append_rows(TABLE, rows(1))

    assert keys(file_setup) == ["mail:a", "mail:2"]
    assert count(file_setup, "GET", r"/content$") == 2  # downloaded again after the 412


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "not-stored"])
def test_file_mode_a_lost_answer_to_the_upload_adds_the_row_once(
    file_setup: GraphSetup, stored: bool
) -> None:
    # The connection drops before the answer comes back, after or before the new version
    # was stored (a completed upload session is gone: repeating its PUT gets a 404).
    file_setup.emu.add_fault("PUT", r"/_upload/", 0, after_commit=stored)

    file_setup.workbook().append_rows(TABLE, rows(1), key_column="Source key")

    assert keys(file_setup) == ["mail:a", "mail:2"]


def test_file_mode_keeps_a_change_made_between_read_and_upload(file_setup: GraphSetup) -> None:
    book = file_setup.workbook()
    original = book._download  # a person saves the file just after the service reads it

    def download_then_someone_saves(folder: Path) -> tuple[Path, str]:
        path, etag = original(folder)
        if count(file_setup, "GET", r"/content$") == 1:
            file_setup.put_workbook(
                {TABLE: (HEADERS, [["PRV-2026-0001", None, "First", "Closed", "mail:a"]])}
            )
        return path, etag

    book._download = download_then_someone_saves  # type: ignore[method-assign]

    book.append_rows(TABLE, rows(1))

    stored = read_register(file_setup)
    assert [r["Source key"] for r in stored] == ["mail:a", "mail:2"]
    assert stored[0]["Status"] == "Closed"  # the person's edit survived


def test_file_mode_refuses_while_the_file_is_open(file_setup: GraphSetup) -> None:
    file_setup.emu.set_file_locked(SITE_HOST, SITE_PATH, REGISTER_PATH, True)
    book = file_setup.workbook()

    assert book.writable() is not None
    with pytest.raises(LockedError):
        book.append_rows(TABLE, rows(1))
    assert keys(file_setup) == ["mail:a"]


def test_file_mode_update_cells_fills_only_empty_cells(file_setup: GraphSetup) -> None:
    written = file_setup.workbook().update_cells(
        TABLE,
        [
            CellUpdate("Status", "New", 0, {"Reference": "PRV-2026-0001"}),
            CellUpdate("Recorded at", datetime(2026, 3, 1, 8, 0), 0, {}),
        ],
    )

    assert written == 1
    assert read_register(file_setup)[0]["Status"] == "Open"


EXPIRED_SESSION = {
    "error": {
        "code": "itemNotFound",
        "message": "The target session is invalid or has expired. Create a new session.",
        "innerError": {"code": "invalidSessionReCreatable"},
    }
}


def test_an_expired_session_is_reopened_and_the_rows_added_once(setup: GraphSetup) -> None:
    setup.emu.add_fault("POST", r"/rows/add$", 404, body=EXPIRED_SESSION)

    setup.workbook().append_rows(TABLE, rows(2))

    assert keys(setup) == ["mail:a", "mail:2", "mail:3"]
    assert count(setup, "POST", r"/createSession$") == 2


def test_a_session_that_expires_after_an_unclear_append_does_not_add_the_rows_twice(
    setup: GraphSetup,
) -> None:
    # The rows went in but the answer was a 504; then the read-back finds the session gone.
    # The new session must read the key column back too, not add the whole burst again.
    setup.emu.add_fault("POST", r"/rows/add$", 504, after_commit=True)
    setup.emu.add_fault("GET", r"/tables/[^/]+/range$", 404, body=EXPIRED_SESSION)

    setup.workbook().append_rows(TABLE, rows(3), key_column="Source key")

    assert keys(setup) == ["mail:a", "mail:2", "mail:3", "mail:4"]
    assert count(setup, "POST", r"/createSession$") == 2


def test_file_mode_skips_rows_already_in_the_file(file_setup: GraphSetup) -> None:
    book = file_setup.workbook()
    book.append_rows(TABLE, rows(2), key_column="Source key")

    book.append_rows(TABLE, rows(3), key_column="Source key")  # a retry, plus one new row

    assert keys(file_setup) == ["mail:a", "mail:2", "mail:3", "mail:4"]


def test_file_mode_reads_download_only_when_the_file_changed(file_setup: GraphSetup) -> None:
    book = file_setup.workbook()
    book.read_table(TABLE)
    book.read_table(TABLE)  # unchanged: only its version is asked for

    assert count(file_setup, "GET", r"/content$") == 1
    file_setup.workbook().append_rows(TABLE, rows(1))  # another writer changes it

    assert [r["Source key"] for r in book.read_table(TABLE).rows] == ["mail:a", "mail:2"]
    assert count(file_setup, "GET", r"/content$") == 3


SESSION_GONE = {"error": {"code": "itemNotFound", "message": "The upload session was not found."}}


@pytest.mark.parametrize("stored", [False, True], ids=["not-stored", "stored"])
def test_file_mode_a_lost_upload_session_starts_the_upload_over(
    file_setup: GraphSetup, stored: bool
) -> None:
    # SharePoint answers 404 itemNotFound from the upload URL: the session expired, was
    # dropped on a fresh session for an Office file, or completed with the answer lost.
    file_setup.emu.add_fault("PUT", r"/_upload/", 404, body=SESSION_GONE, after_commit=stored)

    file_setup.workbook().append_rows(TABLE, rows(1), key_column="Source key")

    assert keys(file_setup) == ["mail:a", "mail:2"]
    assert count(file_setup, "GET", r"/content$") == 2  # read again before starting over
    assert count(file_setup, "POST", r"/createUploadSession$") == (1 if stored else 2)


def test_file_mode_an_upload_session_that_keeps_vanishing_is_transient_not_config_advice(
    file_setup: GraphSetup,
) -> None:
    file_setup.emu.add_fault("PUT", r"/_upload/", 404, body=SESSION_GONE, times=10)

    with pytest.raises(TransientError) as caught:
        file_setup.workbook().append_rows(TABLE, rows(1), key_column="Source key")

    message = str(caught.value)
    assert "upload session was not found" in message
    assert "site_host" not in message and "check" not in message.lower()
    assert keys(file_setup) == ["mail:a"]  # nothing written, nothing lost: the row stays pending


SITE_OR_PATH_LOOKUP = r"(/sites/[^/]+:/sites/[^/]+:$|/drive/root:/)"


def test_a_new_process_finds_the_file_by_the_id_in_the_ledger(setup: GraphSetup) -> None:
    setup.workbook().read_table(TABLE)
    assert count(setup, "GET", SITE_OR_PATH_LOOKUP) == 2  # the site, then the file by path

    setup.workbook().read_table(TABLE)  # a new process: the ids come from the ledger

    assert count(setup, "GET", SITE_OR_PATH_LOOKUP) == 2


@pytest.mark.parametrize("mode", ["workbook", "file"])
def test_a_file_replaced_between_processes_is_found_again_by_path(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    setup = make(tmp_path, request, mode=mode)
    book = setup.workbook()
    book.read_table(TABLE)
    book.http.request("DELETE", book.item(), Call(what="a person"))
    setup.put_workbook({TABLE: (HEADERS, [["PRV-2026-0001", None, "Restored", "Open", "mail:a"]])})

    again = setup.workbook()  # the next process: the ledger's id answers 404
    again.append_rows(TABLE, rows(1), key_column="Source key")

    assert keys(setup) == ["mail:a", "mail:2"]
    setup.workbook().read_table(TABLE)  # and the new id was kept for the one after
    assert count(setup, "GET", SITE_OR_PATH_LOOKUP) == 4  # site + path, twice: no more


def test_an_unchanged_table_is_one_ctag_request_and_a_change_is_read_in_full(
    setup: GraphSetup,
) -> None:
    forms = setup.workbook()  # e.g. the Forms workbook, read every poll
    forms.read_table(TABLE)
    ranges, totals = count(setup, "GET", r"/range$"), count(setup, "GET", r"/tables/[^/]+$")
    before = len(setup.emu.requests)

    again = forms.read_table(TABLE)

    assert len(setup.emu.requests) == before + 1  # only GET …/items/{id}?$select=id,cTag
    assert setup.emu.requests[-1].query.get("$select") == "id,cTag"
    assert [r["Source key"] for r in again.rows] == ["mail:a"]
    setup.workbook().append_rows(TABLE, rows(1))  # a new response arrives (another writer)

    changed = forms.read_table(TABLE)

    assert [r["Source key"] for r in changed.rows] == ["mail:a", "mail:2"]
    assert count(setup, "GET", r"/range$") == ranges + 1
    assert count(setup, "GET", r"/tables/[^/]+$") == totals + 1  # Total Row checked on change


def test_a_total_row_switched_on_later_is_seen_through_the_ctag(
    setup: GraphSetup, tmp_path: Path
) -> None:
    book = setup.workbook()
    assert len(book.read_table(TABLE).rows) == 1
    workbook = openpyxl.load_workbook(
        __import__("io").BytesIO(setup.emu.get_file(SITE_HOST, SITE_PATH, REGISTER_PATH))
    )
    sheet = workbook[TABLE]
    sheet.append(["Total", None, None, None, "=SUBTOTAL(103,[Source key])"])
    sheet.tables[TABLE].ref = "A1:E3"
    sheet.tables[TABLE].totalsRowCount = 1
    workbook.save(tmp_path / "totals.xlsx")
    setup.emu.put_file(SITE_HOST, SITE_PATH, REGISTER_PATH, (tmp_path / "totals.xlsx").read_bytes())

    assert [r["Source key"] for r in book.read_table(TABLE).rows] == ["mail:a"]


def test_our_own_write_drops_the_cached_table_even_if_the_ctag_lags(
    setup: GraphSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = setup.workbook()
    book.read_table(TABLE)
    # Excel for the web may save a workbook-API write to the file (new cTag) a little later.
    monkeypatch.setattr(book, "content_tag", lambda: '"c:{lagging},1"')
    book.read_table(TABLE)
    book.append_rows(TABLE, rows(1), key_column="Source key")

    assert book.find_rows(TABLE, "Source key", ["mail:2"]) == {"mail:2": 3}


# ---------------------------------------------------------------------------- ensure_table


def chronology_spec() -> TableSpec:
    from service.cases.chronology import chronology_table_spec

    return chronology_table_spec()


def sheets_and_tables(setup: GraphSetup) -> dict[str, list[str]]:
    data = setup.emu.get_file(SITE_HOST, SITE_PATH, REGISTER_PATH)
    book = openpyxl.load_workbook(io.BytesIO(data))
    return {ws.title: sorted(t.displayName for t in ws.tables.values()) for ws in book.worksheets}


@pytest.mark.parametrize("step", [r"/worksheets/add$", r"/tables/add$"])
def test_an_unclear_answer_while_adding_a_table_never_makes_a_second(
    setup: GraphSetup, step: str
) -> None:
    before = sheets_and_tables(setup)
    setup.emu.add_fault("POST", step, 504, after_commit=True)
    with pytest.raises(TransientError):
        setup.workbook().ensure_table(chronology_spec())

    assert setup.workbook().ensure_table(chronology_spec()) is True
    assert setup.workbook().ensure_table(chronology_spec()) is False

    # One new sheet holding one table, named; the sheet and table that were there, as they were.
    assert sheets_and_tables(setup) == {**before, "Chronology": ["Chronology"]}
    assert setup.workbook().read_table("Chronology").headers[-1] == "Service key"
    assert count(setup, "POST", r"/tables/add$") == 1  # never a second table
