"""The shipped rule files (Markdown). Installed as ``tilepilot.shipped_rules``; this file only makes
the folder a package, so its files travel as package data. No code lives here."""
