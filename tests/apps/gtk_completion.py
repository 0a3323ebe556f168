"""A GTK 3 field that auto-completes (run with Debian's python3 and python3-gi), for the executor's popup tests.

A Destination entry with a GtkEntryCompletion of four cities, which pops a suggestion list under the
field while typing (an override-redirect window that grabs the pointer), and a Book button beside
it, outside the list. Once shown it prints one JSON line with the widgets' screen boxes [x, y, w, h];
then it appends one JSON line per event to the file given as argv[1]: the entry's text on every
change and clicks on the button.
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402

EVENTS = open(sys.argv[1], "a", buffering=1, encoding="utf-8")
CITIES = ("Zagreb", "Zanzibar", "Zaragoza", "Zurich")


def emit(**event: object) -> None:
    EVENTS.write(json.dumps(event) + "\n")


def main() -> None:
    window = Gtk.Window(title="Trip")
    window.set_default_size(420, 200)
    window.move(40, 40)
    grid = Gtk.Grid(column_spacing=12, row_spacing=12, margin=16)
    window.add(grid)
    label = Gtk.Label(label="Destination:", xalign=0)
    entry = Gtk.Entry(hexpand=True)
    label.set_mnemonic_widget(entry)
    cities = Gtk.ListStore(str)
    for city in CITIES:
        cities.append([city])
    completion = Gtk.EntryCompletion(model=cities, minimum_key_length=1)
    completion.set_text_column(0)
    entry.set_completion(completion)
    entry.connect("changed", lambda e: emit(kind="text", value=e.get_text()))
    book = Gtk.Button(label="Book")
    book.connect("clicked", lambda b: emit(kind="click", button="Book"))
    grid.attach(label, 0, 0, 1, 1)
    grid.attach(entry, 1, 0, 1, 1)
    grid.attach(book, 2, 0, 1, 1)
    window.connect("destroy", Gtk.main_quit)
    window.show_all()

    def report() -> bool:
        boxes = {}
        for name, widget in (("entry", entry), ("book", book)):
            alloc = widget.get_allocation()
            _, x, y = widget.get_window().get_origin()
            boxes[name] = [x + alloc.x, y + alloc.y, alloc.width, alloc.height]
        print(json.dumps({"ready": True, "widgets": boxes}), flush=True)
        return False

    GLib.timeout_add(300, report)
    Gtk.main()


if __name__ == "__main__":
    main()
