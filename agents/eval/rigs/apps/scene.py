"""The grounding scenes' layout, toolkit-neutral (plain Python: the GTK app runs under the system Python).

A scene is a grid over the screen below a title banner; each cell holds one widget of a kind the
toolkit offers, at a random offset, with a random font and a label unique in the scene. Everything
follows from (toolkit, scene number, screen size), so a scene looks the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

WORDS = (
    "Save Open Export Import Print Share Delete Rename Archive Refresh Search Filter Sort Upload Download "
    "Settings Profile Account Billing Invoices Reports Calendar Contacts Messages Projects Tasks Notes Files "
    "Photos Music Videos Backup Restore Sync Publish Preview Undo Redo Copy Paste Cut Zoom Rotate Crop Resize "
    "Merge Split Lock Unlock Pin Star Flag Mute Alerts Privacy Security Network Display Sound Keyboard Mouse "
    "Language Region Updates Storage Battery Bluetooth Printers Fonts Themes Colors Widgets Plugins Scripts "
    "Logs Help About Feedback Support License Terms Budget Orders Clients Vendors Stock Returns Coupons"
).split()
SCENE_COLOURS = ("#ececec", "#dfe8f0", "#f0eadc", "#e4efe2", "#efe2ea", "#e6e6f4")
FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")
FONT_SIZES = (9, 10, 11, 12, 14, 16)
LIST_ROWS = 4
BANNER_HEIGHT = 36


class SceneLayout:
    def __init__(self, toolkit: str, scene: int, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rng = random.Random(f"grounding:{toolkit}:{scene}:{width}x{height}")
        self.colour = SCENE_COLOURS[scene % len(SCENE_COLOURS)]
        self.title = f"Control panel {scene + 1}"
        self._words: Iterator[str] = iter(self.rng.sample(WORDS, len(WORDS)))
        self._scene = scene

    def word(self) -> str:
        return next(self._words)

    def font(self) -> tuple[str, int]:
        return self.rng.choice(FONTS), self.rng.choice(FONT_SIZES)

    def cells(self, kinds: Sequence[str]) -> list[tuple[str, int, int]]:
        """(kind, x, y) of every cell's widget, the kinds dealt round-robin and shuffled."""
        cols = max(3, self.width // 300)
        rows = max(4, (self.height - BANNER_HEIGHT - 12) // 140)
        cell_w, cell_h = self.width // cols, (self.height - BANNER_HEIGHT - 12) // rows
        dealt = [kinds[(i + self._scene) % len(kinds)] for i in range(cols * rows)]
        self.rng.shuffle(dealt)
        return [(kind, (i % cols) * cell_w + self.rng.randint(8, 40), BANNER_HEIGHT + 12 + (i // cols) * cell_h + self.rng.randint(4, 24))
                for i, kind in enumerate(dealt)]
