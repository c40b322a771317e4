"""Writing a generated expectation file, or checking that the committed copy
still matches what the reference produces now (--check)."""
import sys


def write_or_check(path, text, label, check):
    if check:
        with open(path, encoding="utf-8") as f:
            same = f.read() == text
        print(f"{label}: {'ok' if same else 'MISMATCH with ' + path}")
        sys.exit(0 if same else 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {label} to {path}")
