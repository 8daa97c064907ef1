"""``apprefer skan verify FILE|-``: check one postback's signature and print one JSON line.

Exit codes: 0 valid, 1 invalid signature, 2 unreadable input or not a postback (a JSON object with none of a
postback's fields, such as ``{}``). Every outcome prints exactly one line
``{"valid": ..., "version": ..., "reason": ...}`` so scripts can parse the result whatever happened.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from services.skan.verify import REQUIRED_FIELDS_BY_VERSION, Verification, verify_postback

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2
# An object with none of these is not a postback at all (a wrong file, `{}`), rather than one badly signed.
POSTBACK_FIELDS = frozenset({"attribution-signature", "jws-string"}.union(*REQUIRED_FIELDS_BY_VERSION.values()))


class _Unreadable(Exception):
    pass


def _read_postback(path: str, stdin: TextIO) -> dict[str, object]:
    try:
        if path == "-":
            raw: str | bytes = stdin.read()
        else:
            with open(path, "rb") as handle:  # bytes: json detects UTF-8/16/32 and a UTF-8 BOM itself
                raw = handle.read()
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:  # a text stdin fed binary data
        raise _Unreadable(f"{path} is not UTF-8 text") from exc
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError covers JSONDecodeError and bad encodings
        raise _Unreadable(f"{path} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _Unreadable(f"{path} holds JSON {type(document).__name__}, not an object")
    # The team's testdata files wrap the postback with its key and expected outcome; a postback itself
    # never has a "postback" field, so its presence identifies the wrapper.
    if "postback" in document:
        document = document["postback"]
        if not isinstance(document, dict):
            raise _Unreadable(f"{path}: the postback field is not an object")
    if POSTBACK_FIELDS.isdisjoint(document):
        raise _Unreadable(f"{path} is not a SKAN postback: it has none of its fields (attribution-signature, "
                          "ad-network-id, transaction-id, ...)")
    return document


def _emit(stdout: TextIO, result: Verification) -> None:
    line = json.dumps({"valid": result.valid, "version": result.version, "reason": result.reason})
    stdout.write(line + "\n")
    stdout.flush()


def run_verify(path: str, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Verify the postback in ``path`` ("-" for stdin); returns the process exit code.

    The streams default to sys.stdin / sys.stdout looked up at call time, not import time, so redirected
    or captured streams (pytest, the CLI wrapper) are honoured.
    """
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    try:
        postback = _read_postback(path, stdin)
    except _Unreadable as exc:
        _emit(stdout, Verification(valid=False, version=None, reason=str(exc)))
        return EXIT_UNREADABLE
    result = verify_postback(postback)
    _emit(stdout, result)
    return EXIT_VALID if result.valid else EXIT_INVALID


if __name__ == "__main__":  # python -m services.skan.verify_cli FILE|- until the main CLI wires it in
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m services.skan.verify_cli FILE|-\n")
        raise SystemExit(EXIT_UNREADABLE)
    raise SystemExit(run_verify(sys.argv[1]))
