"""One control of a page's form, for the calculator and the tool pages alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One control of a form, as the build renders it.

    ``kind`` is number, choice, radio (a choice shown as segments), text, search (text
    with suggestions: the calculator's preset), textarea or flag; ``options`` are
    (value, label) pairs for a choice or radio (and the suggestions of a search);
    ``default`` the tool pages' starting value (the calculator's are its
    ``DEFAULT_FIELDS``); ``when`` (``key=value``) shows the control only while another
    holds that value; ``describe_modes`` lists the calculator's describe modes the control
    belongs to (empty: all); ``form`` names the form a control placed outside it joins.
    """

    key: str
    label: str
    hint: str
    kind: str
    default: str = ""
    unit: str = ""
    inputmode: str = ""
    options: tuple[tuple[str, str], ...] = ()
    when: str = ""
    describe_modes: tuple[str, ...] = ()
    form: str = ""
