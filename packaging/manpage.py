#!/usr/bin/env python3
"""Writes a man page (roff) for a swift-argument-parser command from its own description of itself.

    manpage.py BINARY SECTION OUT_FILE

runs `BINARY --experimental-dump-help` (ArgumentParser's machine-readable help: the same text as
--help, with every subcommand) and renders NAME, SYNOPSIS, DESCRIPTION, OPTIONS and one section per
subcommand. It needs no network and no Swift build, unlike ArgumentParser's generate-manual plugin,
so packaging/build-deb can run it on binaries built earlier (see packaging/README.md).
"""

import datetime
import json
import os
import subprocess
import sys


def roff(text):
    """Escapes text for roff: backslashes, and a leading dot or quote on a line."""
    out = []
    for line in text.replace("\\", "\\e").split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line.replace("-", "\\-"))
    return "\n".join(out)


def option_label(arg):
    if arg["kind"] == "positional":
        label = "\\fI%s\\fR" % arg.get("valueName", "value")
        return label + ("..." if arg.get("isRepeating") else "")
    names = []
    for name in arg.get("names", []):
        dash = "-" if name["kind"] in ("short", "longWithSingleDash") else "--"
        names.append("\\fB%s%s\\fR" % (dash.replace("-", "\\-"), name["name"].replace("-", "\\-")))
    label = ", ".join(names)
    if arg["kind"] == "option":
        label += " \\fI%s\\fR" % arg.get("valueName", "value")
    return label


def synopsis(path, command):
    parts = ["\\fB%s\\fR" % roff(" ".join(path))]
    for arg in command.get("arguments", []):
        if not arg.get("shouldDisplay", True):
            continue
        label = option_label(arg).split(", ")[-1]
        parts.append("[%s]" % label if arg.get("isOptional") else label)
    if any(s.get("shouldDisplay", True) for s in command.get("subcommands", [])):
        parts.append("\\fIsubcommand\\fR")
    return " ".join(parts)


def options(command):
    lines = []
    for arg in command.get("arguments", []):
        if not arg.get("shouldDisplay", True):
            continue
        lines.append(".TP")
        lines.append(option_label(arg))
        text = arg.get("abstract", "")
        if arg.get("discussion"):
            text += "\n" + arg["discussion"]
        if "defaultValue" in arg:
            text += " (default: %s)" % arg["defaultValue"]
        lines.append(roff(text) if text else "")
    return lines


def discussion(text):
    """Paragraphs stay paragraphs; indented lines (examples) are kept verbatim."""
    lines = []
    for line in text.split("\n"):
        if line.startswith("  "):
            lines += [".nf", roff(line), ".fi"]
        elif not line.strip():
            lines.append(".PP")
        else:
            lines.append(roff(line))
    return lines


def render(info, section, version):
    command = info["command"]
    name = command["commandName"]
    date = datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH", "0")), datetime.timezone.utc
    ).strftime("%Y-%m-%d")
    out = [
        '.TH "%s" "%s" "%s" "Vigil %s" "Vigil"' % (name.upper(), section, date, version),
        ".SH NAME",
        "%s \\- %s" % (roff(name), roff(command.get("abstract", ""))),
        ".SH SYNOPSIS",
        synopsis([name], command),
    ]
    if command.get("discussion"):
        out += [".SH DESCRIPTION"] + discussion(command["discussion"])
    opts = options(command)
    if opts:
        out += [".SH OPTIONS"] + opts

    def walk(path, sub):
        nonlocal out
        if not sub.get("shouldDisplay", True) or sub["commandName"] == "help":
            return
        full = path + [sub["commandName"]]
        out += [".SS %s" % roff(" ".join(full)), roff(sub.get("abstract", "")), ".PP", synopsis(full, sub)]
        if sub.get("discussion"):
            out += [".PP"] + discussion(sub["discussion"])
        out += options(sub)
        for child in sub.get("subcommands", []):
            walk(full, child)

    subs = [s for s in command.get("subcommands", []) if s.get("shouldDisplay", True) and s["commandName"] != "help"]
    if subs:
        out.append(".SH SUBCOMMANDS")
        for sub in subs:
            walk([name], sub)
    out += [
        ".SH FILES",
        "/etc/vigil/vigild.yaml, /etc/vigil/policies/, /var/lib/vigil/ (agent);",
        "/etc/vigil\\-collector/environment, /var/lib/vigil\\-collector/ (collector).",
        ".SH SEE ALSO",
        "\\fBvigild\\fR(8), \\fBvigilctl\\fR(1), \\fBvigil\\-collector\\fR(8)",
    ]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: manpage.py BINARY SECTION OUT_FILE")
    binary, section, out_file = sys.argv[1:]
    dump = subprocess.run([binary, "--experimental-dump-help"], check=True, capture_output=True, text=True)
    version = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout.strip()
    try:
        info = json.loads(dump.stdout)
    except json.JSONDecodeError as error:
        sys.exit("manpage.py: %s --experimental-dump-help: not JSON: %s" % (binary, error))
    with open(out_file, "w", encoding="utf-8") as f:
        f.write(render(info, section, version))


if __name__ == "__main__":
    main()
