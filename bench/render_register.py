"""Render the demo's concern register and board report the way people see them.

    PYTHONPATH=. python bench/render_register.py [OUT] [--picture=docs/register.png]
                                                        (default OUT: ./render-out)

Builds the demo afresh in OUT/demo (``prevent-service init --demo``, ``poll``, ``report``),
then has LibreOffice (headless) print each workbook to PDF as it prints on paper, and
pdftoppm turn the pages into PNGs:

- ``register-screen-1.png``: the register's first screen (the columns a 1,600-pixel-wide
  window shows), as the DSP sees it on opening the file;
- ``concern-register-N.png``: the register as it prints;
- ``board-report-N.png``: the board report as it prints.

It also checks that LibreOffice calculates the register's Retention review formula (a date
of birth, a closed date, both). ``--picture`` writes the first screen, trimmed and small, for
the DSP guide. Look at the PNGs before calling a layout done; the figures printed are page
counts. Needs ``soffice`` (LibreOffice), ``pdftoppm`` (poppler-utils) and, for ``--picture``,
ImageMagick's ``convert``. Never touches a real folder.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path

import openpyxl
from openpyxl.utils import get_column_letter

SCREEN_CHARS = 200  # column-width units a 1,600-pixel window shows at 100 % zoom (about 8 px each)


def run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prevent_service(*args: str) -> None:
    # Exit 1 ("done, but something needs attention") is normal for the demo: no worker runs.
    cmd = [sys.executable, "-m", "service.cli", *args]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")


def screen_copy(register: Path, out: Path) -> Path:
    """A copy of the register whose print area is the first screen: the columns that fit
    ``SCREEN_CHARS`` wide and the rows there are, on one page."""
    wb = openpyxl.load_workbook(register)
    ws = wb["Register"]
    for other in [s for s in wb.worksheets if s is not ws]:  # the first screen of the register
        wb.remove(other)
    # As the DSP would have it a little later: the first concern worked on (invented text).
    headers = [c.value for c in ws[1]]
    worked = {
        "Status": "In progress",
        "Risk level": "Medium",
        "Decision and rationale": "Spoke to the tutor; meeting the learner tomorrow before "
        "deciding on a referral.",
    }
    for header, value in worked.items():
        ws.cell(2, headers.index(header) + 1).value = value
    used = 0.0
    last = 1
    for col in range(1, ws.max_column + 1):
        dim = ws.column_dimensions[get_column_letter(col)]
        if dim.hidden:
            continue
        used += dim.width or 8.43
        if used > SCREEN_CHARS:
            break
        last = col
    ws.print_area = f"A1:{get_column_letter(last)}{max(ws.max_row, 8)}"
    ws.print_title_cols = None
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 1
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.oddFooter.center.text = ""
    target = out / "register-screen.xlsx"
    wb.save(target)
    return target


def to_png(book: Path, out: Path, profile: Path, dpi: int) -> list[Path]:
    pdf_dir = out / "pdf"
    run(
        "soffice",
        f"-env:UserInstallation=file://{profile}",
        "--headless",
        "--convert-to",
        "pdf",
        "--outdir",
        str(pdf_dir),
        str(book),
    )
    pdf = pdf_dir / f"{book.stem}.pdf"
    run("pdftoppm", "-png", "-r", str(dpi), str(pdf), str(out / "png" / book.stem))
    return sorted((out / "png").glob(f"{book.stem}-*.png"))


def retention_in_libreoffice(register: Path, out: Path, profile: Path) -> list[str]:
    """Whether LibreOffice calculates the Retention review formula: a date of birth on the
    first row, a closed date on the second, both on the third (the date of birth wins)."""
    wb = openpyxl.load_workbook(register)
    ws = wb["Register"]
    headers = [c.value for c in ws[1]]
    dob, closed = headers.index("DOB or age") + 1, headers.index("Closed date") + 1
    cases = [
        (datetime(2008, 3, 12), None, date(2033, 3, 12)),
        (None, datetime(2026, 11, 30), date(2051, 11, 30)),
        (datetime(2009, 1, 31), datetime(2026, 11, 30), date(2034, 1, 31)),
    ]
    for row, (born, shut, _) in enumerate(cases, start=2):
        ws.cell(row, dob).value = born
        ws.cell(row, closed).value = shut
    book = out / "retention-check.xlsx"
    wb.save(book)
    run(
        "soffice",
        f"-env:UserInstallation=file://{profile}",
        "--headless",
        "--convert-to",
        "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false",
        "--outdir",
        str(out),
        str(book),
    )
    with open(out / "retention-check.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    column = rows[0].index("Retention review")
    lines = []
    for (born, shut, expected), row in zip(cases, rows[1:], strict=False):
        got = row[column]
        ok = got in (expected.strftime("%d/%m/%Y"), expected.isoformat())
        given = f"DOB {born:%d/%m/%Y}" if born else ""
        given += (" and " if born and shut else "") + (f"closed {shut:%d/%m/%Y}" if shut else "")
        lines.append(f"  {given}: {got or '(empty)'} ({'ok' if ok else 'WRONG'}, want {expected})")
    return lines


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--picture=")]
    picture = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--picture=")), None)
    out = Path(args[0] if args else "render-out").resolve()
    for tool in ("soffice", "pdftoppm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (LibreOffice, poppler-utils)")
    for sub in ("demo", "pdf", "png"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "png").mkdir(parents=True)
    demo = out / "demo"
    config = str(demo / "config.toml")
    prevent_service("init", "--demo", str(demo))
    prevent_service("--config", config, "poll")
    report = demo / "board-report.xlsx"
    prevent_service("--config", config, "report", "--out", str(report))
    register = demo / "workbooks" / "concern-register.xlsx"
    with tempfile.TemporaryDirectory() as profile:  # a private LibreOffice profile
        pages = {
            "register (first screen)": to_png(screen_copy(register, out), out, Path(profile), 110),
            "register (printed)": to_png(register, out, Path(profile), 70),
            "board report (printed)": to_png(report, out, Path(profile), 70),
        }
        retention = retention_in_libreoffice(register, out, Path(profile))
    for what, pngs in pages.items():
        print(f"{what}: {len(pngs)} page(s): {', '.join(p.name for p in pngs)}")
    print(f"in {out / 'png'}")
    print("Retention review, as LibreOffice calculates it:")
    print("\n".join(retention))
    if picture:  # the docs' picture: trimmed, a few colours, small
        run(
            "convert",
            str(pages["register (first screen)"][0]),
            "-trim",
            "-bordercolor",
            "white",
            "-border",
            "12",
            "-resize",
            "1100x>",
            "-colors",
            "64",
            f"PNG8:{picture}",
        )
        print(f"picture: {picture} ({Path(picture).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
