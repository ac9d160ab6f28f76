"""Hostile input at the edges: the command line and the page's requests.

Whatever arrives (bytes that are not UTF-8, JSON nested 10,000 deep, integers of 5,000
digits, empty or BOM-prefixed requests), the command line exits with status 2 and
``nnmem: error: <flag>: …``, and a page gets a reply in plain words: never a traceback,
never an exception's class name. (Not in tests/unit: a recursion this deep is a
different experiment in Pyodide's stack.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz_entry import DEFAULT_FIELDS, TOOL_NAMES, call, compute, handle
from nnmem.cli import main

DEEP = "[" * 10_000 + "]" * 10_000
DIGITS = "7" * 5_000
# Words that give away a Python exception instead of a message.
PYTHON = re.compile(
    r"Traceback|Error\b|Exception|JSONDecodeError|RecursionError|ValueError|TypeError|"
    r"KeyError|sys\.set_int_max_str_digits|\(char \d+\)"
)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(args)
    err = capsys.readouterr().err
    return status, err


@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        ("--scenario", b'\xff\xfe{"model": "generic"}', "it is not UTF-8 text (byte 0 is 0xff)"),
        ("--config", b'{"hidden_size": "\xe9"}', "it is not UTF-8 text (byte 17 is 0xe9)"),
        ("--scenario", DEEP.encode(), "is not valid JSON: it is nested too deeply."),
        ("--config", DEEP.encode(), "is not valid JSON: it is nested too deeply."),
        ("--cnn", DEEP.encode(), "is not valid JSON: it is nested too deeply."),
        (
            "--scenario",
            f'{{"model": "generic", "params_millions": {DIGITS}}}'.encode(),
            "the number 777777777777777777777777… has 5,000 digits, more than 100.",
        ),
        (
            "--config",
            f'{{"hidden_size": {DIGITS}}}'.encode(),
            "the number 777777777777777777777777… has 5,000 digits, more than 100.",
        ),
        ("--scenario", b"", "is not valid JSON: Expecting value at line 1, column 1."),
        ("--scenario", b"[1, 2]", "The scenario file must hold a JSON object."),
        ("--scenario", b'{"batch_size": 1e999}', "the number 1e999 is out of range."),
        ("--scenario", b'{"batch_size": NaN}', "NaN is not a JSON number."),
    ],
)
def test_a_bad_file_exits_2_naming_its_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, content: bytes, message: str
) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    status, err = run_cli([flag, str(path)], capsys)
    assert status == 2
    assert err.startswith(f"nnmem: error: {flag}: ")
    assert message in err
    assert not PYTHON.search(err)


def test_a_file_that_is_not_there_or_a_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run_cli(["--scenario", str(tmp_path / "none.json")], capsys)
    assert (status, err) == (
        2,
        f"nnmem: error: --scenario: Cannot read {tmp_path / 'none.json'}: "
        "No such file or directory.\n",
    )
    status, err = run_cli(["--config", str(tmp_path)], capsys)
    assert status == 2
    assert err.startswith("nnmem: error: --config: Cannot read ")


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--params", DIGITS], "nnmem: error: --params: Model size must be a number"),
        (["--params", "7", "--batch-size", DIGITS], "nnmem: error: --batch-size: "),
        (["--params", "7", "--set", f"num_gpus={DIGITS}"], "nnmem: error: --set num_gpus: "),
        (["--params", "7", "--set", "nonsense"], "nnmem: error: --set: --set takes KEY=VALUE"),
        (["--preset", "\x00" * 50], "nnmem: error: --preset: Preset "),
    ],
)
def test_a_bad_flag_value_exits_2(
    capsys: pytest.CaptureFixture[str], args: list[str], start: str
) -> None:
    status, err = run_cli(args, capsys)
    assert status == 2
    assert err.startswith(start)
    assert not PYTHON.search(err)


def test_non_utf8_standard_input_exits_2_from_a_real_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nnmem", "--scenario", "-"],
        input=b"\xff\xfe\x00",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode() == (
        "nnmem: error: --scenario: Cannot read -: it is not UTF-8 text (byte 0 is 0xff).\n"
    )


def test_a_flag_that_is_not_utf8_exits_2_from_a_real_process() -> None:
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"nnmem", b"--cnn", b"\xff\xfe"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(b"nnmem: error: --cnn: ")
    assert not PYTHON.search(done.stderr.decode("utf-8", "replace"))


HOSTILE_REQUESTS = [
    "",
    " ",
    "not json",
    "\ufeff",
    "{",
    "null",
    "[]",
    "42",
    '"fields"',
    '{"fields": 3}',
    '{"fields": null}',
    '{"fields": []}',
    DEEP,
    '{"fields": ' + DEEP + "}",
    '{"fields": {"batch_size": ' + DIGITS + "}}",
    '{"fields": {"batch_size": "' + DIGITS + '"}}',
    '{"fields": {"params_millions": 1e999}}',
    '{"fields": {"params_millions": NaN}}',
    '{"fields": {"config": "' + "[" * 10_000 + '"}}',
    '{"fields": {"describe": "config", "config": "{\\"hidden_size\\": ' + DIGITS + '}"}}',
    '{"fields": {"\\ud800": "\\udfff"}}',
    '{"fields": {"' + "k" * 10_000 + '": "v"}}',
    "\ufeff" + json.dumps({"fields": {"bogus": 1}}),
]


def _plain(reply: dict[str, object]) -> str:
    words = json.dumps(reply.get("fatal", "")) + json.dumps(reply.get("errors", []))
    assert not PYTHON.search(words), words
    return words


@pytest.mark.parametrize("request_text", HOSTILE_REQUESTS, ids=range(len(HOSTILE_REQUESTS)))
def test_a_hostile_request_gets_a_plain_reply(request_text: str) -> None:
    for answer in (compute, handle, *(lambda r, t=t: call(t, r) for t in TOOL_NAMES)):
        reply = json.loads(answer(request_text))
        assert reply["ok"] or reply.get("fatal") or reply["errors"]
        _plain(reply)


def test_a_bom_before_a_good_request_is_read() -> None:
    reply = json.loads(compute("\ufeff" + json.dumps({"fields": DEFAULT_FIELDS})))
    assert reply["ok"] is True


def test_the_requests_that_are_not_json_say_why() -> None:
    def message(request: str) -> str:
        return str(json.loads(compute(request))["errors"][0]["message"])

    assert message("") == "The request is not valid JSON: Expecting value at line 1, column 1."
    assert message(DEEP) == "The request is not valid JSON: it is nested too deeply."
    assert message('{"fields": {"x": ' + DIGITS + "}}") == (
        "The request is not valid JSON: the number 777777777777777777777777… has 5,000 "
        "digits, more than 100."
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[" * 10_000, "config.json is not valid JSON: it is nested too deeply."),
        (
            '{"hidden_size": ' + DIGITS + "}",
            "config.json is not valid JSON: the number 777777777777777777777777… has 5,000 "
            "digits, more than 100.",
        ),
    ],
)
def test_the_parameter_count_tool_reads_a_pasted_config_as_the_calculator_does(
    config: str, message: str
) -> None:
    reply = json.loads(
        call("parameter-count", json.dumps({"fields": {"source": "config", "config": config}}))
    )
    assert reply["ok"] is False
    assert reply["errors"] == [{"field": "config", "message": message}]
