"""``python -m tilepilot``: the same CLI as the ``tilepilot`` command."""

from tilepilot.agents.cli import main

if __name__ == "__main__":
    main()
