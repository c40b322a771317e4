"""Command line shared by the scripts that generate expectation files: write
the cases, or with --check compare a fresh generation with the committed copy."""
import argparse
import json
import sys


def main(doc, build, path, label):
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args()
    cases = build()
    text = json.dumps(cases, indent=1, ensure_ascii=False) + "\n"
    if args.check:
        with open(path, encoding="utf-8") as f:
            same = f.read() == text
        print(f"{len(cases)} {label}: {'ok' if same else 'MISMATCH with ' + path}")
        sys.exit(0 if same else 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {len(cases)} {label} to {path}")
