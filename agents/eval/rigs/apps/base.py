"""What every eval app shares: its window, named targets with their on-screen boxes, state, a command channel.

An app is a real Tk program in its own process. It prints one JSON line on stdout when its window
is mapped (``{"event": "ready", ...}``), then answers each ``layout`` line on stdin with one JSON
line: every visible target's root-window box (``winfo_rootx/rooty/width/height``, or a list
item's ``bbox``) and the app's state. The state is also written atomically to ``--state FILE`` on
every change, so a task's success is judged from the app even after the app has quit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import tkinter as tk
from collections.abc import Callable
from typing import Any

Box = tuple[int, int, int, int]  # x, y, width, height in root (screen) pixels
BoxFn = Callable[[], "Box | None"]


def widget_box(widget: tk.Misc) -> Box | None:
    """The widget's screen box, or None while it is not shown."""
    if not widget.winfo_ismapped() or not widget.winfo_viewable():
        return None
    return widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height()


def list_item_box(listbox: tk.Listbox, index: int) -> Box | None:
    """A listbox row's screen box while the row is scrolled into view (clipped to the listbox)."""
    if not listbox.winfo_viewable():
        return None
    listbox.update_idletasks()
    bbox = listbox.bbox(index)
    if not bbox:
        return None
    x, y, _w, h = bbox
    inner_w = listbox.winfo_width() - 2 * x
    top, bottom = max(y, 0), min(y + h, listbox.winfo_height())
    if bottom - top < h:  # half-scrolled row: not a target
        return None
    return listbox.winfo_rootx() + x, listbox.winfo_rooty() + top, inner_w, bottom - top


def menu_item_box(menu: tk.Menu, index: int) -> Box | None:
    """A posted menu entry's screen box."""
    if not menu.winfo_ismapped():
        return None
    top = menu.yposition(index)
    last = menu.index("end")
    bottom = menu.yposition(index + 1) if last is not None and index < last else menu.winfo_height() - 2
    return menu.winfo_rootx(), menu.winfo_rooty() + top, menu.winfo_width(), bottom - top


def write_atomic_json(path: str, data: dict[str, Any]) -> None:
    # Apps run without tilepilot's agents package on purpose (plain Tk programs); same atomic rename.
    fd, tmp = tempfile.mkstemp(prefix=".state.", dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False)
    os.replace(tmp, path)


class SuiteApp:
    """A Tk window at a fixed place with named targets and a JSON state."""

    def __init__(self, title: str, geometry: str, state_path: str | None, bg: str = "#ececec") -> None:
        self.root = tk.Tk(className="TilepilotEval")
        self.root.title(title)
        self.root.geometry(geometry)
        self.root.configure(bg=bg)
        self.root.option_add("*insertOffTime", 0)  # no blinking cursor: screenshots stay stable
        self.bg = bg
        self.state: dict[str, Any] = {}
        self.state_path = state_path
        self.targets: dict[str, tuple[str, BoxFn]] = {}  # name -> (description, box function)
        self._ready = False
        self._buffer = b""

    def target(self, name: str, widget_or_fn: tk.Misc | BoxFn, text: str = "") -> None:
        if isinstance(widget_or_fn, tk.Misc):
            widget = widget_or_fn
            box_fn: BoxFn = lambda: widget_box(widget)
        else:
            box_fn = widget_or_fn
        self.targets[name] = (text, box_fn)

    def set_state(self, **changes: Any) -> None:
        self.state.update(changes)
        if self.state_path:
            write_atomic_json(self.state_path, self.state)

    def layout(self) -> dict[str, Any]:
        self.root.update_idletasks()
        targets = {}
        for name, (text, fn) in self.targets.items():
            try:
                box = fn()
            except tk.TclError:
                box = None
            if box is not None and box[2] > 0 and box[3] > 0:
                targets[name] = {"x": box[0], "y": box[1], "width": box[2], "height": box[3], "text": text}
        return {"targets": targets, "state": self.state}

    def _emit(self, payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def _announce(self) -> None:
        if not self._ready:
            self._ready = True
            # Let the first frames draw before the suite looks.
            self.root.after(150, lambda: self._emit({"event": "ready", **self.layout()}))

    def _on_stdin(self, fd: int, _mask: int) -> None:
        chunk = os.read(fd, 65536)
        if not chunk:  # the suite went away: leave too
            self.quit()
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            command = line.decode().strip()
            if command == "layout":
                self._emit({"event": "layout", **self.layout()})
            elif command == "quit":
                self.quit()

    def quit(self) -> None:
        try:
            self.root.destroy()
        except tk.TclError:
            pass

    def run(self) -> None:
        self.set_state()  # the file exists from the start
        # Building may have mapped the window already (update_idletasks): then <Map> is gone.
        if self.root.winfo_ismapped():
            self._announce()
        else:
            self.root.bind("<Map>", lambda e: self._announce() if e.widget is self.root else None, add="+")
        self.root.tk.createfilehandler(sys.stdin.fileno(), tk.READABLE, self._on_stdin)
        self.root.mainloop()


def app_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--state", default=None, help="JSON file the app keeps its state in")
    parser.add_argument("--screen", default="1280x800", help="screen size WxH the window is laid out for")
    return parser


def screen_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)
