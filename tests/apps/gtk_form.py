"""A small GTK 3 form for the accessibility-guard tests (run with Debian's python3 and python3-gi).

It has a Name field, a Password field (hidden text, so its accessible role is "password text"),
a Delete button and a Save button. Once shown it prints one JSON line with its window's screen
geometry and each widget's, then appends one JSON line per event to the file given as argv[1]:
clicks on the buttons and the final text of each field on every change.
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402

EVENTS = open(sys.argv[1], "a", buffering=1, encoding="utf-8")


def emit(**event: object) -> None:
    EVENTS.write(json.dumps(event) + "\n")


def main() -> None:
    window = Gtk.Window(title="Account form")
    window.set_default_size(420, 220)
    window.move(40, 40)
    grid = Gtk.Grid(column_spacing=12, row_spacing=12, margin=16)
    window.add(grid)
    widgets: dict[str, Gtk.Widget] = {}
    for row, (label_text, hidden) in enumerate((("Name:", False), ("Password:", True))):
        label = Gtk.Label(label=label_text, xalign=0)
        entry = Gtk.Entry(visibility=not hidden, hexpand=True)
        label.set_mnemonic_widget(entry)  # the entry's accessible name comes from its label
        entry.connect("changed", lambda e, name=label_text[:-1].lower(): emit(kind="text", field=name, value=e.get_text()))
        grid.attach(label, 0, row, 1, 1)
        grid.attach(entry, 1, row, 2, 1)
        widgets[label_text[:-1].lower()] = entry
    for column, name in ((1, "Delete"), (2, "Save")):
        button = Gtk.Button(label=name)
        button.connect("clicked", lambda b, name=name: emit(kind="click", button=name))
        grid.attach(button, column, 2, 1, 1)
        widgets[name.lower()] = button
    window.connect("destroy", Gtk.main_quit)
    window.show_all()

    def report() -> bool:
        boxes = {}
        for name, widget in widgets.items():
            alloc = widget.get_allocation()
            _, x, y = widget.get_window().get_origin()
            boxes[name] = [x + alloc.x, y + alloc.y, alloc.width, alloc.height]
        print(json.dumps({"ready": True, "widgets": boxes}), flush=True)
        return False

    GLib.timeout_add(300, report)
    Gtk.main()


if __name__ == "__main__":
    main()
