#!/usr/bin/env python3
"""The README's options table and `flitzid --help` list the same options.

Usage: check_readme_options.py README FLITZID
"""
import re
import subprocess
import sys


def main():
    readme, flitzid = sys.argv[1], sys.argv[2]
    help_text = subprocess.run([flitzid, "--help"], check=True,
                               capture_output=True, text=True).stdout
    in_help = set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", help_text, re.M))

    with open(readme, encoding="utf-8") as f:
        text = f.read()
    table = text.split("## Options", 1)[1].split("\n## ", 1)[0]
    in_readme = set(re.findall(r"^\| `(?:-\w, )?(--[\w-]+)", table, re.M))

    missing = sorted(in_help - in_readme)
    extra = sorted(in_readme - in_help)
    for option in missing:
        print(f"README lacks {option}, which flitzid --help lists")
    for option in extra:
        print(f"README lists {option}, which flitzid --help does not")
    print(f"{len(in_help)} options in --help, {len(in_readme)} in README")
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
