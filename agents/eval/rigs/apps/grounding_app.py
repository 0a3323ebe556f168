"""A screen full of real Tk widgets for the grounding suite; every click is caught, nothing changes.

Run: python -m tilepilot.agents.eval.rigs.apps.grounding_app --scene 0 --screen 1280x800

The window covers the screen. Its widgets (buttons, ttk buttons, entries, checkboxes, radio
buttons, menu buttons, combo boxes and list rows) are laid out on a grid from the scene number,
with varying fonts and offsets, and each label is unique in the scene. Every widget carries a
``Probe`` binding tag in front of its own, which records a button press (with the target the
press landed on, as Tk itself resolves it) and stops the event there: no widget reacts, hovers,
takes focus or opens, so the screen stays identical for every target of the scene.
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk

from tilepilot.agents.eval.rigs.apps.base import SuiteApp, app_arguments, list_item_box, screen_size
from tilepilot.agents.eval.rigs.apps.scene import BANNER_HEIGHT, LIST_ROWS, SceneLayout

KINDS = ("button", "ttk_button", "entry", "check", "radio", "menubutton", "combobox", "list")


class GroundingApp(SuiteApp):
    def __init__(self, scene: int, width: int, height: int) -> None:
        self.scene = SceneLayout("tk", scene, width, height)
        super().__init__(f"tilepilot grounding scene {scene}", f"{width}x{height}+0+0", None, bg=self.scene.colour)
        self.rng = self.scene.rng
        self.owner: dict[str, str] = {}  # widget path -> target name
        self.lists: dict[str, list[str]] = {}  # listbox path -> target name per row
        self.state["presses"] = []
        self._build(width)
        self.root.bind_class("Probe", "<ButtonPress>", self._press)
        for sequence in ("<ButtonRelease>", "<Enter>", "<Leave>", "<Motion>", "<FocusIn>", "<KeyPress>"):
            self.root.bind_class("Probe", sequence, lambda _e: "break")
        self._probe(self.root)

    def _font(self) -> tuple[str, int]:
        return self.scene.font()

    def _build(self, width: int) -> None:
        banner = tk.Label(self.root, text=self.scene.title, bg="#34495e", fg="white", anchor="w",
                          font=("DejaVu Sans", 14, "bold"), padx=12)
        banner.place(x=0, y=0, width=width, height=BANNER_HEIGHT)
        for kind, x, y in self.scene.cells(KINDS):
            getattr(self, f"_add_{kind}")(x, y)

    def _name(self, word: str) -> str:
        return word.lower()

    def _add(self, widget: tk.Widget, name: str, text: str, x: int, y: int) -> None:
        widget.place(x=x, y=y)
        self.owner[str(widget)] = name
        self.target(name, widget, text)

    def _add_button(self, x: int, y: int) -> None:
        word = self.scene.word()
        widget = tk.Button(self.root, text=word, font=self._font(), padx=self.rng.randint(6, 20))
        self._add(widget, f"button:{self._name(word)}", f"the {word} button", x, y)

    def _add_ttk_button(self, x: int, y: int) -> None:
        word = self.scene.word()
        style = f"S{len(self.owner)}.TButton"
        ttk.Style(self.root).configure(style, font=self._font())
        widget = ttk.Button(self.root, text=word, style=style)
        self._add(widget, f"button:{self._name(word)}", f"the {word} button", x, y)

    def _labelled(self, x: int, y: int, word: str) -> int:
        label = tk.Label(self.root, text=f"{word}:", font=self._font(), bg=self.bg)
        label.place(x=x, y=y)
        label.update_idletasks()
        return x + label.winfo_reqwidth() + 6

    def _add_entry(self, x: int, y: int) -> None:
        word = self.scene.word()
        x1 = self._labelled(x, y, word)
        widget = tk.Entry(self.root, font=self._font(), width=self.rng.randint(8, 16))
        self._add(widget, f"field:{self._name(word)}", f"the {word} field", x1, y)

    def _add_combobox(self, x: int, y: int) -> None:
        word = self.scene.word()
        x1 = self._labelled(x, y, word)
        widget = ttk.Combobox(self.root, values=["one", "two"], width=self.rng.randint(8, 14), font=self._font())
        self._add(widget, f"dropdown:{self._name(word)}", f"the {word} drop-down", x1, y)

    def _add_check(self, x: int, y: int) -> None:
        word = self.scene.word()
        widget = tk.Checkbutton(self.root, text=word, font=self._font(), bg=self.bg, highlightthickness=0)
        self._add(widget, f"checkbox:{self._name(word)}", f"the {word} checkbox", x, y)

    def _add_radio(self, x: int, y: int) -> None:
        word = self.scene.word()
        widget = tk.Radiobutton(self.root, text=word, value=word, font=self._font(), bg=self.bg, highlightthickness=0)
        self._add(widget, f"option:{self._name(word)}", f"the {word} option", x, y)

    def _add_menubutton(self, x: int, y: int) -> None:
        word = self.scene.word()
        widget = tk.Menubutton(self.root, text=word, font=self._font(), relief="raised", padx=10, pady=4)
        self._add(widget, f"menu:{self._name(word)}", f"the {word} menu", x, y)

    def _add_list(self, x: int, y: int) -> None:
        words = [self.scene.word() for _ in range(LIST_ROWS)]
        listbox = tk.Listbox(self.root, font=self._font(), height=LIST_ROWS, width=self.rng.randint(10, 16),
                             exportselection=False, activestyle="none")
        for word in words:
            listbox.insert("end", word)
        listbox.place(x=x, y=y)
        self.lists[str(listbox)] = []
        for row, word in enumerate(words):
            name = f"item:{self._name(word)}"
            self.lists[str(listbox)].append(name)
            self.target(name, lambda lb=listbox, r=row: list_item_box(lb, r), f"the list item {word}")

    def _probe(self, widget: tk.Misc) -> None:
        widget.bindtags(("Probe", *widget.bindtags()))
        for child in widget.winfo_children():
            self._probe(child)

    def _press(self, event: tk.Event) -> str:
        path = str(event.widget)
        name = self.owner.get(path)
        listbox = event.widget
        if path in self.lists and isinstance(listbox, tk.Listbox):  # only listboxes are in self.lists
            row = listbox.nearest(event.y)
            box = list_item_box(listbox, row)
            inside = box is not None and box[1] <= event.y_root < box[1] + box[3]
            name = self.lists[path][row] if inside and row < len(self.lists[path]) else None
        self.state["presses"].append({"target": name, "x": event.x_root, "y": event.y_root})
        return "break"


def main() -> None:
    parser = app_arguments((__doc__ or "").partition("\n")[0])
    parser.add_argument("--scene", type=int, default=0)
    args = parser.parse_args()
    width, height = screen_size(args.screen)
    GroundingApp(args.scene, width, height).run()


if __name__ == "__main__":
    main()
