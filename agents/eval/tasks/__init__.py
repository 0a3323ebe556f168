"""Desktop task files: tasks on real applications that anyone can write (YAML), their checks and the
accessibility-tree reference agent. ``tilepilot eval desktop --tasks DIR`` runs a folder of them."""
