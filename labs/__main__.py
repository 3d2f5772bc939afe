"""The command line: ``python -m labs list``; ``python -m labs check N [--solution | --dir DIR]
[--json FILE]``."""

import argparse
import sys
from pathlib import Path

from labs.check import grade, lab, labs, write_json


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m labs",
                                     description="List the teaching labs or grade one.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the labs, one per line starting with its number")
    check = commands.add_parser("check", help="grade lab N: a score per part; exit 0 when "
                                              "every part passes")
    check.add_argument("number", metavar="N", help="the lab's number")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--solution", action="store_true",
                        help="grade the reference solution instead of your files")
    source.add_argument("--dir", metavar="DIR", help="grade the lab's files in DIR (a student's "
                                                     "submission) instead of labs/NN_name/")
    check.add_argument("--json", metavar="FILE", help="also write the scores to FILE as JSON")
    args = parser.parse_args(argv)
    if args.command == "list":
        for entry in labs():
            print(f"{entry.number}  {entry.title}  (labs/{entry.directory.name}/)")
        return 0
    numbers = ", ".join(str(entry.number) for entry in labs())
    try:
        entry = lab(int(args.number))
    except ValueError:
        print(f"error: no lab {args.number!r}: the labs are {numbers}", file=sys.stderr)
        return 2
    if args.dir is not None and not Path(args.dir).is_dir():
        print(f"error: --dir {args.dir!r} is not a directory", file=sys.stderr)
        return 2
    report = grade(entry.number, directory=args.dir, solution=args.solution, out=sys.stdout)
    if args.json:
        write_json(report, args.json)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
