"""Split a manifest by utterance id: entries whose id matches a regular expression, or the others.

    python recipes/tools/filter_manifest.py all.jsonl test.jsonl --id-regex '^LJ00[13]-'
    python recipes/tools/filter_manifest.py all.jsonl train.jsonl --id-regex '^LJ00[123]-' --invert
"""
import argparse
import re

from speechs2s.data.manifest import read_manifest, write_manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("out")
    parser.add_argument("--id-regex", required=True, help="kept when re.search(REGEX, id) matches")
    parser.add_argument("--invert", action="store_true", help="keep the entries that do not match")
    args = parser.parse_args(argv)
    pattern = re.compile(args.id_regex)
    entries = [e for e in read_manifest(args.manifest) if bool(pattern.search(e["id"])) != args.invert]
    if not entries:
        raise SystemExit(f"error: {args.manifest}: no entries left by --id-regex {args.id_regex!r}{' --invert' if args.invert else ''}")
    write_manifest(args.out, entries)
    print(f"wrote {len(entries)} entries to {args.out}")


if __name__ == "__main__":
    main()
