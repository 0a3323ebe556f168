"""A GTK 3 grounding scene: the same kind of screen as the Tk one, drawn by another toolkit.

Run (a Python with PyGObject, e.g. Debian's /usr/bin/python3 with python3-gi):
    python3 agents/eval/rigs/apps/gtk_app.py --scene 4 --screen 1280x800

It runs as a file, not a module: Debian's interpreter cannot import the installed ``tilepilot``
(another Python's environment), so it takes its one sibling, ``scene.py``, from its own folder.

Speaks the protocol of :mod:`tilepilot.agents.eval.rigs.apps.base` (ready line, ``layout`` / ``quit`` on stdin) without
importing it (it is Tk). Boxes come from GTK itself: the window's origin plus each widget's
``translate_coordinates`` and allocation. An event box above every widget catches each press (the
app records the target GTK placed under it) so no widget reacts, hovers or takes focus.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# PyGObject is Debian's python3-gi: this app runs under the interpreter that has it (client.gtk_python), not
# the project's environment, so static analysers of the environment cannot resolve it.
import gi  # pyright: ignore[reportMissingImports]

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402  # pyright: ignore[reportMissingImports]

if __package__:
    from tilepilot.agents.eval.rigs.apps.scene import BANNER_HEIGHT, LIST_ROWS, SceneLayout  # noqa: E402
else:  # run as a file by another interpreter: sys.path[0] is this folder
    from scene import BANNER_HEIGHT, LIST_ROWS, SceneLayout  # noqa: E402

KINDS = ("button", "toggle", "entry", "check", "radio", "menubutton", "combobox", "list", "switch", "spin")


class GtkScene:
    def __init__(self, scene: int, width: int, height: int) -> None:
        self.scene = SceneLayout("gtk", scene, width, height)
        Gtk.Settings.get_default().set_property("gtk-cursor-blink", False)
        self.window = Gtk.Window(title=f"tilepilot grounding scene {scene} (GTK)")
        self.window.set_decorated(False)
        self.window.set_default_size(width, height)
        self.window.move(0, 0)
        self.fixed = Gtk.Fixed()
        shield = Gtk.EventBox()
        shield.set_above_child(True)  # every press lands here, none on a widget
        shield.add(self.fixed)
        shield.connect("button-press-event", self._press)
        self.window.add(shield)
        self.css = [f"window {{ background-color: {self.scene.colour}; }}",
                    "#banner { background-color: #34495e; color: white; font: bold 14pt 'DejaVu Sans'; padding-left: 12px; }"]
        self.targets: dict[str, tuple[str, Gtk.Widget]] = {}
        self.presses: list[dict] = []
        self._build(width)
        provider = Gtk.CssProvider()
        provider.load_from_data("\n".join(self.css).encode())
        Gtk.StyleContext.add_provider_for_screen(Gdk.Screen.get_default(), provider, Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)
        self.window.connect("destroy", Gtk.main_quit)
        self._ready = False
        self.window.connect("map-event", lambda *_: self._announce())
        self.window.show_all()

    # -- building ------------------------------------------------------------------------
    def _styled(self, widget: Gtk.Widget) -> Gtk.Widget:
        family, size = self.scene.font()
        name = f"w{len(self.css)}"
        widget.set_name(name)
        self.css.append(f"#{name}, #{name} * {{ font-family: '{family}'; font-size: {size}pt; }}")
        widget.set_can_focus(False)
        return widget

    def _add(self, widget: Gtk.Widget, name: str, text: str, x: int, y: int) -> None:
        self.fixed.put(self._styled(widget), x, y)
        self.targets[name] = (text, widget)

    def _labelled(self, word: str, widget: Gtk.Widget, name: str, text: str, x: int, y: int, suffix: str = ":") -> None:
        """A caption and its widget side by side (GTK lays them out: the caption's font decides its width)."""
        row = Gtk.Box(spacing=8)
        row.pack_start(self._styled(Gtk.Label(label=f"{word}{suffix}")), False, False, 0)
        row.pack_start(self._styled(widget), False, False, 0)
        widget.set_valign(Gtk.Align.CENTER)
        self.fixed.put(row, x, y)
        self.targets[name] = (text, widget)

    def _build(self, width: int) -> None:
        banner = Gtk.Label(label=self.scene.title, xalign=0)
        banner.set_name("banner")
        banner.set_size_request(width, BANNER_HEIGHT)
        self.fixed.put(banner, 0, 0)
        for kind, x, y in self.scene.cells(KINDS):
            word = self.scene.word()
            key = word.lower()
            if kind == "button":
                self._add(Gtk.Button(label=word), f"button:{key}", f"the {word} button", x, y)
            elif kind == "toggle":
                self._add(Gtk.ToggleButton(label=word), f"toggle:{key}", f"the {word} toggle button", x, y)
            elif kind == "check":
                self._add(Gtk.CheckButton(label=word), f"checkbox:{key}", f"the {word} checkbox", x, y)
            elif kind == "radio":
                self._add(Gtk.RadioButton(label=word), f"option:{key}", f"the {word} option", x, y)
            elif kind == "menubutton":
                button = Gtk.MenuButton()
                button.add(Gtk.Label(label=word))
                button.set_popup(Gtk.Menu())  # without a menu GTK greys the button out
                self._add(button, f"menu:{key}", f"the {word} menu", x, y)
            elif kind == "entry":
                entry = Gtk.Entry(width_chars=self.scene.rng.randint(8, 16))
                self._labelled(word, entry, f"field:{key}", f"the {word} field", x, y)
            elif kind == "combobox":
                combo = Gtk.ComboBoxText()
                for item in ("one", "two"):
                    combo.append_text(item)
                self._labelled(word, combo, f"dropdown:{key}", f"the {word} drop-down", x, y)
            elif kind == "switch":
                self._labelled(word, Gtk.Switch(), f"switch:{key}", f"the {word} switch", x, y, suffix="")
            elif kind == "spin":
                spin = Gtk.SpinButton.new_with_range(0, 100, 1)
                self._labelled(word, spin, f"number:{key}", f"the {word} number field", x, y)
            else:
                self._add_list(word, x, y)

    def _add_list(self, first: str, x: int, y: int) -> None:
        listbox = Gtk.ListBox()
        frame = Gtk.Frame()
        frame.add(listbox)
        family, size = self.scene.font()
        for word in [first] + [self.scene.word() for _ in range(LIST_ROWS - 1)]:
            row = Gtk.ListBoxRow()
            label = Gtk.Label(label=word, xalign=0)
            label.set_size_request(self.scene.rng.randint(110, 170), -1)
            row.add(label)
            row.set_can_focus(False)
            row.set_name(f"w{len(self.css)}")
            self.css.append(f"#{row.get_name()} label {{ font-family: '{family}'; font-size: {size}pt; padding: 2px 6px; }}")
            listbox.add(row)
            self.targets[f"item:{word.lower()}"] = (f"the list item {word}", row)
        self.fixed.put(frame, x, y)

    # -- geometry and the protocol -------------------------------------------------------
    def box(self, widget: Gtk.Widget) -> tuple[int, int, int, int] | None:
        gdk_window = self.window.get_window()
        if gdk_window is None or not widget.get_mapped():
            return None
        _, ox, oy = gdk_window.get_origin()
        coords = widget.translate_coordinates(self.window, 0, 0)
        if coords is None:
            return None
        return ox + coords[0], oy + coords[1], widget.get_allocated_width(), widget.get_allocated_height()

    def layout(self) -> dict:
        targets = {}
        for name, (text, widget) in self.targets.items():
            box = self.box(widget)
            if box is not None and box[2] > 1 and box[3] > 1:
                targets[name] = {"x": box[0], "y": box[1], "width": box[2], "height": box[3], "text": text}
        return {"targets": targets, "state": {"presses": self.presses}}

    def _press(self, _widget: Gtk.Widget, event: Gdk.EventButton) -> bool:
        x, y = int(event.x_root), int(event.y_root)
        hit = None
        for name, (_text, widget) in self.targets.items():
            box = self.box(widget)
            if box is not None and box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3]:
                hit = name
        self.presses.append({"target": hit, "x": x, "y": y})
        return True

    def _emit(self, payload: dict) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    def _announce(self) -> None:
        if not self._ready:
            self._ready = True
            GLib.timeout_add(300, lambda: self._emit({"event": "ready", **self.layout()}) and False)

    def listen(self) -> None:
        buffer = b""
        fd = sys.stdin.fileno()

        def readable(*_: object) -> bool:
            nonlocal buffer
            chunk = os.read(fd, 65536)
            if not chunk:
                Gtk.main_quit()
                return False
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip() == b"layout":
                    self._emit({"event": "layout", **self.layout()})
                elif line.strip() == b"quit":
                    Gtk.main_quit()
            return True

        GLib.io_add_watch(fd, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, readable)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--scene", type=int, default=0)
    parser.add_argument("--screen", default="1280x800")
    args = parser.parse_args()
    width, height = (int(v) for v in args.screen.lower().split("x"))
    scene = GtkScene(args.scene, width, height)
    scene.listen()
    Gtk.main()


if __name__ == "__main__":
    main()
