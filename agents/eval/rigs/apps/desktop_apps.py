"""Small real Tk apps for the desktop suite's tasks; each keeps its state in a JSON file.

Run: python -m tilepilot.agents.eval.rigs.apps.desktop_apps --app form --state state.json

Apps (``--app``) and their state keys:
  form      Name and Email fields, Submit          submitted: {"name", "email"} | null
  menu      a Format menu button with four entries chosen: entry label | null
  checkbox  three checkboxes                        newsletter, share, remember: bool
  list      40 cities in a listbox (8 rows shown)   selected: city | null
  unicode   a Message field and Send                sent: text | null
  dialog    a window with an "Update available" dialog   dialog: "open" | "closed" | "later"
  editor    a text editor; Ctrl+Q quits it         quit: bool
  records   three records and "Delete all records"  deleted: bool
  shipping  three shipping options, Place order    order: option | null
  counter   a quantity with - and + buttons         quantity: int
  search    a search field; Enter searches          searched: text | null
  volume    a volume slider (0-100, steps of 5)     volume: int
"""

from __future__ import annotations

import tkinter as tk

from tilepilot.agents.eval.rigs.apps.base import SuiteApp, app_arguments, list_item_box, menu_item_box

WINDOW = "640x440+120+90"
FONT = ("DejaVu Sans", 12)
CITIES = (
    "Amsterdam Athens Auckland Bangkok Barcelona Berlin Bogota Boston Cairo Chicago Copenhagen Dakar Delhi Dublin "
    "Edinburgh Florence Geneva Hanoi Helsinki Istanbul Jakarta Kyoto Lagos Lima Lisbon London Madrid Manila "
    "Montreal Nairobi Oslo Paris Prague Quito Riga Seoul Tallinn Vienna Warsaw Zanzibar"
).split()
FORMAT_ENTRIES = ("Bold", "Italic", "Underline", "Strikethrough")
SHIPPING = ("Standard", "Express", "Pickup")


def _button(app: SuiteApp, name: str, text: str, command, x: int, y: int, width: int = 140) -> tk.Button:
    widget = tk.Button(app.root, text=text, font=FONT, command=command)
    widget.place(x=x, y=y, width=width, height=36)
    app.target(name, widget)
    return widget


def _field(app: SuiteApp, name: str, label: str, y: int) -> tk.Entry:
    tk.Label(app.root, text=label, font=FONT, bg=app.bg).place(x=30, y=y + 4)
    entry = tk.Entry(app.root, font=FONT)
    entry.place(x=170, y=y, width=380, height=32)
    app.target(name, entry)
    return entry


def build_form(app: SuiteApp) -> None:
    name, email = _field(app, "field:name", "Name:", 40), _field(app, "field:email", "Email:", 100)
    app.set_state(submitted=None)
    _button(app, "button:submit", "Submit",
            lambda: app.set_state(submitted={"name": name.get(), "email": email.get()}), 170, 170)


def build_menu(app: SuiteApp) -> None:
    shown = tk.Label(app.root, text="Sample text", font=("DejaVu Serif", 20), bg=app.bg)
    shown.place(x=40, y=140)
    button = tk.Menubutton(app.root, text="Format", font=FONT, relief="raised", padx=12, pady=4)
    menu = tk.Menu(button, tearoff=False, font=FONT)
    for index, label in enumerate(FORMAT_ENTRIES):
        menu.add_command(label=label, command=lambda v=label: (app.set_state(chosen=v), shown.configure(text=f"Sample text ({v})")))
        app.target(f"item:{label.lower()}", lambda i=index: menu_item_box(menu, i))
    button.configure(menu=menu)
    button.place(x=40, y=40)
    app.target("menu:format", button)
    app.set_state(chosen=None)


def build_checkbox(app: SuiteApp) -> None:
    boxes = {"newsletter": "Send me the newsletter", "share": "Share my data with partners", "remember": "Remember this device"}
    for row, (key, text) in enumerate(boxes.items()):
        var = tk.BooleanVar(app.root, value=False)
        widget = tk.Checkbutton(app.root, text=text, variable=var, font=FONT, bg=app.bg,
                                command=lambda k=key, v=var: app.set_state(**{k: v.get()}))
        widget.place(x=40, y=40 + 60 * row)
        app.target(f"checkbox:{key}", widget)
    app.set_state(newsletter=False, share=False, remember=False)


def build_list(app: SuiteApp) -> None:
    tk.Label(app.root, text="Destination:", font=FONT, bg=app.bg).place(x=40, y=30)
    frame = tk.Frame(app.root)
    frame.place(x=40, y=60, width=260, height=8 * 24 + 8)
    listbox = tk.Listbox(frame, font=FONT, exportselection=False, activestyle="none", height=8)
    scrollbar = tk.Scrollbar(frame, command=listbox.yview)
    listbox.configure(yscrollcommand=scrollbar.set)
    scrollbar.pack(side="right", fill="y")
    listbox.pack(side="left", fill="both", expand=True)
    for index, city in enumerate(CITIES):
        listbox.insert("end", city)
        app.target(f"item:{city.lower()}", lambda i=index: list_item_box(listbox, i))
    app.target("list:cities", listbox)
    listbox.bind("<<ListboxSelect>>", lambda _e: app.set_state(selected=[listbox.get(i) for i in listbox.curselection()][0]
                                                                 if listbox.curselection() else None))
    app.set_state(selected=None)


def build_unicode(app: SuiteApp) -> None:
    message = _field(app, "field:message", "Message:", 40)
    app.set_state(sent=None)
    _button(app, "button:send", "Send", lambda: app.set_state(sent=message.get()), 170, 100)


def build_dialog(app: SuiteApp) -> None:
    tk.Label(app.root, text="Photo library: 1,204 photos", font=FONT, bg=app.bg).place(x=30, y=30)
    dialog = tk.Toplevel(app.root, bg="#fdf6e3")
    dialog.title("Update available")
    dialog.geometry("380x170+250+220")
    tk.Label(dialog, text="Update available", font=("DejaVu Sans", 14, "bold"), bg="#fdf6e3").place(x=20, y=16)
    tk.Label(dialog, text="Version 2.4 is ready to install.", font=FONT, bg="#fdf6e3").place(x=20, y=54)

    def close(how: str) -> None:
        dialog.destroy()
        app.set_state(dialog=how)

    for name, text, x in (("button:later", "Remind me later", 16), ("button:close", "Close", 204)):
        widget = tk.Button(dialog, text=text, font=FONT, command=lambda h="later" if name.endswith("later") else "closed": close(h))
        widget.place(x=x, y=108, width=160, height=36)
        app.target(name, widget)
    # No window manager stacks it: raise it whenever either window is mapped, so it ends on top whichever
    # of the two the X server maps last.
    dialog.bind("<Map>", lambda _e: dialog.lift(), add="+")
    app.root.bind("<Map>", lambda e: dialog.lift() if e.widget is app.root else None, add="+")
    app.set_state(dialog="open")


def build_editor(app: SuiteApp) -> None:
    text = tk.Text(app.root, font=FONT, wrap="word")
    text.insert("1.0", "Shopping list:\n- apples\n- bread\n")
    text.place(x=20, y=20, width=600, height=360)
    app.target("text:editor", text)

    def quit_editor(_event: tk.Event | None = None) -> str:
        app.set_state(quit=True)
        app.root.after(50, app.quit)
        return "break"

    app.root.bind_all("<Control-q>", quit_editor)
    app.set_state(quit=False)


def build_records(app: SuiteApp) -> None:
    for row, record in enumerate(("INV-1001  Acme Ltd  1,200.00", "INV-1002  Globex  310.50", "INV-1003  Initech  99.99")):
        tk.Label(app.root, text=record, font=("DejaVu Sans Mono", 12), bg=app.bg).place(x=30, y=30 + 34 * row)
    app.set_state(deleted=False)
    _button(app, "button:delete", "Delete all records", lambda: app.set_state(deleted=True), 30, 160, width=200)


def build_shipping(app: SuiteApp) -> None:
    choice = tk.StringVar(app.root, value="Standard")
    tk.Label(app.root, text="Shipping:", font=FONT, bg=app.bg).place(x=30, y=30)
    for row, option in enumerate(SHIPPING):
        widget = tk.Radiobutton(app.root, text=option, value=option, variable=choice, font=FONT, bg=app.bg)
        widget.place(x=40, y=64 + 40 * row)
        app.target(f"option:{option.lower()}", widget)
    app.set_state(order=None)
    _button(app, "button:order", "Place order", lambda: app.set_state(order=choice.get().lower()), 40, 200)


def build_counter(app: SuiteApp) -> None:
    tk.Label(app.root, text="Quantity:", font=FONT, bg=app.bg).place(x=30, y=40)
    shown = tk.Label(app.root, text="1", font=("DejaVu Sans", 18), width=3, bg="white", relief="sunken")
    shown.place(x=200, y=34)

    def change(delta: int) -> None:
        value = max(0, app.state["quantity"] + delta)
        shown.configure(text=str(value))
        app.set_state(quantity=value)

    _button(app, "button:minus", "-", lambda: change(-1), 140, 34, width=48)
    _button(app, "button:plus", "+", lambda: change(1), 270, 34, width=48)
    app.set_state(quantity=1)


def build_search(app: SuiteApp) -> None:
    field = _field(app, "field:search", "Search:", 40)
    result = tk.Label(app.root, text="", font=FONT, bg=app.bg)
    result.place(x=170, y=90)

    def search(_event: tk.Event) -> None:
        app.set_state(searched=field.get())
        result.configure(text=f"3 results for {field.get()!r}")

    field.bind("<Return>", search)
    app.set_state(searched=None)


def build_volume(app: SuiteApp) -> None:
    tk.Label(app.root, text="Volume:", font=FONT, bg=app.bg).place(x=30, y=50)
    scale = tk.Scale(app.root, from_=0, to=100, resolution=5, orient="horizontal", length=400, showvalue=True,
                     font=FONT, command=lambda value: app.set_state(volume=int(float(value))))
    scale.set(20)
    scale.place(x=130, y=30)

    def handle(value: int):
        def box():
            scale.update_idletasks()
            x, y = scale.coords(value)
            return scale.winfo_rootx() + x - 4, scale.winfo_rooty() + y - 4, 9, 9
        return box

    app.target("slider:handle", lambda: handle(int(scale.get()))())
    for value in range(0, 101, 5):
        app.target(f"slider:{value}", handle(value))
    app.set_state(volume=20)


BUILDERS = {name[len("build_"):]: fn for name, fn in globals().items() if name.startswith("build_")}


def main() -> None:
    parser = app_arguments((__doc__ or "").partition("\n")[0])
    parser.add_argument("--app", required=True, choices=sorted(BUILDERS))
    args = parser.parse_args()
    app = SuiteApp(f"tilepilot eval: {args.app}", WINDOW, args.state)
    BUILDERS[args.app](app)
    app.run()


if __name__ == "__main__":
    main()
