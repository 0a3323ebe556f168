"""A small Tk app that logs every input event it receives, for UI and desktop-agent tests.

Run: python tests/apps/tk_app.py --log events.jsonl [--label TEXT] [--geometry 640x420+40+60]

Every line of the log is one JSON object with at least ``event``. Once the window is mapped the
app writes ``{"event": "ready", ...}`` with the on-screen (root) rectangle of the window, of
every named widget and of every colour patch, so tests never guess where things are.

Layout inside the window (x, y, width, height), fixed so screenshots are predictable:
  patches red/green/blue/yellow  (10+70*i, 10, 60, 40)  pure colours, no border
  label ".label"                 (300, 10, 330, 40)     text from --label
  buttons ".ok", ".delete"       (10, 70) / (110, 70), 90x34
  entry ".entry"                 (10, 120, 300, 30)
  listbox ".listbox"             (10, 165, 150, 120)    items LIST_ITEMS
  canvas ".canvas"               (200, 165, 300, 200)   white; drag and wheel target
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import tkinter as tk

PATCHES = {
    "red": ("#ff0000", (10, 10, 60, 40)),
    "green": ("#00ff00", (80, 10, 60, 40)),
    "blue": ("#0000ff", (150, 10, 60, 40)),
    "yellow": ("#ffff00", (220, 10, 60, 40)),
}
LIST_ITEMS = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi",
]
WINDOW_BG = "#d9d9d9"
SHIFT_MASK = 0x1


class EventLog:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # line-buffered

    def write(self, event: str, **fields: object) -> None:
        record = {"event": event, "t": round(time.time(), 4), **fields}
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()


def _widget_name(widget: object) -> str:
    return str(widget) if widget is not None else ""


class TkApp:
    def __init__(self, args: argparse.Namespace) -> None:
        self.log = EventLog(args.log)
        self.root = tk.Tk(className="TilepilotTestApp")
        self.root.title(args.title)
        self.root.geometry(args.geometry)
        self.root.resizable(False, False)
        self.root.configure(bg=WINDOW_BG)
        self._build(args.label)
        self._bind()

    def _build(self, label: str) -> None:
        root = self.root
        for name, (colour, (x, y, w, h)) in PATCHES.items():
            patch = tk.Frame(root, name=f"patch_{name}", bg=colour, bd=0, highlightthickness=0)
            patch.place(x=x, y=y, width=w, height=h)
        self.label = tk.Label(root, name="label", text=label, anchor="w", bg=WINDOW_BG)
        self.label.place(x=300, y=10, width=330, height=40)
        tk.Button(root, name="ok", text="OK", command=lambda: self._invoked("OK")).place(
            x=10, y=70, width=90, height=34)
        tk.Button(root, name="delete", text="Delete", command=lambda: self._invoked("Delete")).place(
            x=110, y=70, width=90, height=34)
        self.entry_text = tk.StringVar(root)
        self.entry = tk.Entry(root, name="entry", textvariable=self.entry_text)
        self.entry.place(x=10, y=120, width=300, height=30)
        self.entry_text.trace_add("write", lambda *_: self.log.write(
            "entry_changed", widget=".entry", value=self.entry_text.get()))
        self.listbox = tk.Listbox(root, name="listbox", exportselection=False)
        for item in LIST_ITEMS:
            self.listbox.insert("end", item)
        self.listbox.place(x=10, y=165, width=150, height=120)
        self.canvas = tk.Canvas(root, name="canvas", bg="white", highlightthickness=0)
        self.canvas.place(x=200, y=165, width=300, height=200)

    def _bind(self) -> None:
        root = self.root
        root.bind_all("<ButtonPress>", lambda e: self._mouse("button_press", e), add="+")
        root.bind_all("<ButtonRelease>", lambda e: self._mouse("button_release", e), add="+")
        # On the toplevel's tag, not "all": within one tag only the most specific binding
        # fires, so <Double-Button-1> on "all" would swallow the second button_press.
        root.bind("<Double-Button-1>", lambda e: self._mouse("double_click", e), add="+")
        root.bind_all("<MouseWheel>", lambda e: self._mouse("wheel", e, delta=e.delta), add="+")
        root.bind_all("<KeyPress>", self._key, add="+")
        self.canvas.bind("<ButtonPress-1>", lambda e: self._mouse("drag_start", e), add="+")
        self.canvas.bind("<B1-Motion>", lambda e: self._mouse("drag_motion", e), add="+")
        self.canvas.bind("<ButtonRelease-1>", lambda e: self._mouse("drag_end", e), add="+")
        self.listbox.bind("<<ListboxSelect>>", self._list_select)
        root.bind("<Map>", self._mapped, add="+")
        root.protocol("WM_DELETE_WINDOW", self.quit)

    # --- event handlers ---------------------------------------------------------------
    def _mouse(self, kind: str, e: tk.Event, **extra: object) -> None:
        fields = dict(widget=_widget_name(e.widget), x=e.x, y=e.y, x_root=e.x_root, y_root=e.y_root)
        if kind in ("button_press", "button_release"):
            fields["button"] = int(e.num)
            fields["state"] = int(e.state) if isinstance(e.state, int) else 0
            # X11 reports the wheel as buttons 4/5 (vertical) and 6/7 (horizontal); Tk 8.6
            # delivers 6/7 as Shift+4/5, so a shifted 4/5 is a horizontal step.
            if e.num in (4, 5, 6, 7) and kind == "button_press":
                shifted = e.num in (6, 7) or fields["state"] & SHIFT_MASK
                vertical, horizontal = {4: ("up", "left"), 5: ("down", "right"),
                                        6: ("left", "left"), 7: ("right", "right")}[int(e.num)]
                self.log.write("wheel", direction=horizontal if shifted else vertical, **fields)
        self.log.write(kind, **fields, **extra)

    def _key(self, e: tk.Event) -> None:
        self.log.write("key_press", widget=_widget_name(e.widget), keysym=e.keysym, char=e.char,
                       state=int(e.state) if isinstance(e.state, int) else str(e.state))

    def _list_select(self, _e: tk.Event) -> None:
        selected = [self.listbox.get(i) for i in self.listbox.curselection()]
        self.log.write("list_select", widget=".listbox", selected=selected)

    def _invoked(self, name: str) -> None:
        self.log.write("button_invoked", name=name)

    def _mapped(self, e: tk.Event) -> None:
        if e.widget is not self.root or getattr(self, "_ready", False):
            return
        self._ready = True
        # Geometry is only final after the WM placed and decorated the window.
        self.root.after(150, self._announce_ready)

    def _announce_ready(self) -> None:
        self.root.update_idletasks()
        self.root.focus_force()
        self.entry.focus_set()
        widgets = {
            str(w): _rect(w)
            for w in (self.root, self.label, self.entry, self.listbox, self.canvas,
                      self.root.nametowidget("ok"), self.root.nametowidget("delete"))
        }
        patches = {
            name: {"colour": colour, **_rect(self.root.nametowidget(f"patch_{name}"))}
            for name, (colour, _) in PATCHES.items()
        }
        self.log.write("ready", window=_rect(self.root), widgets=widgets, patches=patches,
                       list_items=LIST_ITEMS, label=self.label.cget("text"))

    def quit(self, *_: object) -> None:
        self.log.write("quit")
        self.root.destroy()


def _rect(w: tk.Misc) -> dict[str, int]:
    return {"x": w.winfo_rootx(), "y": w.winfo_rooty(), "width": w.winfo_width(),
            "height": w.winfo_height()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", required=True, help="JSON-lines event log (appended)")
    p.add_argument("--label", default="Tk test app", help="text of the label at the top")
    p.add_argument("--title", default="tilepilot test app")
    p.add_argument("--geometry", default="640x420+40+60", help="Tk geometry WxH+X+Y")
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="exit on its own after this long, so a crashed test leaks nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = TkApp(args)
    signal.signal(signal.SIGTERM, lambda *_: app.root.after(0, app.quit))
    app.root.after(int(args.max_seconds * 1000), app.quit)
    # Tk only runs Python signal handlers when it returns to Python; poll to let SIGTERM in.
    def heartbeat() -> None:
        app.root.after(100, heartbeat)
    heartbeat()
    app.root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
