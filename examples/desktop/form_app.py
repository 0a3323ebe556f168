"""A small form for trying `tilepilot desktop`: a name field, a list, OK and a dangerous Delete.

Run: python examples/desktop/form_app.py [--log form.jsonl]
Every submitted form (and every Delete press) is appended to the log, so you can check what the
agent really did.
"""

from __future__ import annotations

import argparse
import json
import time
import tkinter as tk

COLOURS = ["red", "green", "blue", "yellow"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", default="form.jsonl", help="JSON-lines log of what was submitted")
    args = parser.parse_args()

    def log(event: str, **fields: object) -> None:
        with open(args.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, "t": round(time.time(), 3), **fields}, ensure_ascii=False) + "\n")

    root = tk.Tk(className="TilepilotForm")
    root.title("tilepilot example form")
    root.geometry("520x360+40+60")
    tk.Label(root, text="Your name:").place(x=20, y=20)
    name = tk.Entry(root)
    name.place(x=120, y=18, width=300, height=28)
    tk.Label(root, text="Favourite colour:").place(x=20, y=70)
    colours = tk.Listbox(root, exportselection=False)
    for colour in COLOURS:
        colours.insert("end", colour)
    colours.place(x=160, y=70, width=140, height=90)

    def submit() -> None:
        chosen = [colours.get(i) for i in colours.curselection()]
        log("submitted", name=name.get(), colour=chosen[0] if chosen else None)
        status.config(text=f"Thanks, {name.get() or '?'}!")

    tk.Button(root, text="OK", command=submit).place(x=20, y=200, width=100, height=34)
    tk.Button(root, text="Delete everything", command=lambda: log("deleted")).place(x=360, y=300, width=140, height=34)
    status = tk.Label(root, text="")
    status.place(x=140, y=206)
    root.mainloop()


if __name__ == "__main__":
    main()
