"""Owner cells (roles as the plan writes them) → addresses; unknown roles are kept and reported."""

from __future__ import annotations

import pytest

from service.compliance.owners import RoleBook

BOOK = RoleBook(
    {
        "Executive Director": ["ed@example.org"],
        "Operations Director": ["od@example.org"],
        "Training Managers": ["tm1@example.org", "tm2@example.org"],
        "WRAP specialists": ["wrap@example.org"],
        "All staff": ["staff@example.org"],
        "Training and Development Manager": ["tdm@example.org"],
        "Board": [],
    }
)


@pytest.mark.parametrize(
    ("cell", "addresses"),
    [
        ("Executive Director", ["ed@example.org"]),
        ("  executive   DIRECTOR ", ["ed@example.org"]),
        ("Executive Director; Operations Director", ["ed@example.org", "od@example.org"]),
        ("Executive Director, Operations Director", ["ed@example.org", "od@example.org"]),
        ("Executive Director and Operations Director", ["ed@example.org", "od@example.org"]),
        ("Executive Director\nOperations Director", ["ed@example.org", "od@example.org"]),
        ("Executive Director & WRAP specialists", ["ed@example.org", "wrap@example.org"]),
        # As copied from the PDF: no separator at all.
        (
            "Training Managers All staff",
            ["tm1@example.org", "tm2@example.org", "staff@example.org"],
        ),
        (
            "Operations Director Training Managers",
            ["od@example.org", "tm1@example.org", "tm2@example.org"],
        ),
        # A role whose own name holds "and" is not split.
        ("Training and Development Manager", ["tdm@example.org"]),
        (
            "Training and Development Manager; Executive Director",
            ["tdm@example.org", "ed@example.org"],
        ),
        # An address is used as it is.
        ("someone@example.org", ["someone@example.org"]),
        (
            "Pat Example <pat@example.org>; Executive Director",
            ["pat@example.org", "ed@example.org"],
        ),
        ("Executive Director; Executive Director", ["ed@example.org"]),
    ],
)
def test_known_roles(cell: str, addresses: list[str]) -> None:
    owners = BOOK.resolve(cell)
    assert list(owners.addresses) == addresses
    assert owners.problem is None


def test_unknown_role_is_reported_and_known_parts_kept() -> None:
    owners = BOOK.resolve("Training Managers; Finance Director")
    assert owners.addresses == ("tm1@example.org", "tm2@example.org")
    assert owners.unknown == ("Finance Director",)
    assert owners.problem is not None and "Finance Director" in owners.problem


def test_only_unknown_roles_give_no_addresses_and_a_problem() -> None:
    owners = BOOK.resolve("Head of Curriculum")
    assert owners.addresses == ()
    assert owners.problem is not None and "unknown role 'Head of Curriculum'" in owners.problem


def test_empty_owner_and_role_without_addresses_are_problems() -> None:
    assert BOOK.resolve(None).problem == "no owner"
    assert BOOK.resolve("   ").problem == "no owner"
    board = BOOK.resolve("Board")
    assert board.addresses == () and board.problem is not None and "no addresses" in board.problem


def test_lookup_ignores_case_and_spacing() -> None:
    assert BOOK.addresses("all   STAFF") == ("staff@example.org",)
    assert BOOK.known("wrap specialists")
    assert not BOOK.known("WRAP specialist")
