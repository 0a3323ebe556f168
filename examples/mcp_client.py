"""Call tilepilot from another agent's side: the mcp SDK's own client starts `tilepilot mcp` over stdio,
lists its tools, checks a rule file and reviews a PDF, printing the progress notifications as they come.

    python examples/mcp_client.py [PDF] [RULES]        # defaults: the demo contract and its rules

The review runs with no model (the rule checks only), so no model server is needed; drop "no_model"
and set TILEPILOT_BASE_URL to have the model read the pages too. Needs `pip install 'tilepilot[mcp]'`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent


async def main(pdf: Path, rules: Path) -> None:
    runs = tempfile.mkdtemp(prefix="tilepilot-mcp-runs-")
    # The server takes paths only inside its roots: here, the folders of the PDF and the rules.
    roots = [arg for folder in dict.fromkeys((pdf.resolve().parent, rules.resolve().parent)) for arg in ("--root", str(folder))]
    server = StdioServerParameters(command=sys.executable, args=["-m", "tilepilot", "mcp", "--runs", runs, *roots])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        hello = await session.initialize()
        print(f"connected: {hello.server_info.name} {hello.server_info.version}")
        for tool in (await session.list_tools()).tools:
            hints = tool.annotations
            print(f"tool {tool.name}: {tool.title} (read-only {hints.read_only_hint}, destructive {hints.destructive_hint});"
                  f" arguments {sorted(tool.input_schema.get('properties', {}))}")

        checked = await session.call_tool("check_rules", {"paths": [str(rules)]})
        print(f"check_rules -> {json.dumps(checked.structured_content)}")

        async def progress(done: float, total: float | None, message: str | None) -> None:
            print(f"  progress {done:g}/{'?' if total is None else f'{total:g}'}: {message}")

        reviewed = await session.call_tool("review_documents", {"paths": [str(pdf)], "rules": [str(rules)],
                                                                "no_model": True}, progress_callback=progress)
        if reviewed.is_error:
            raise SystemExit(f"review_documents failed: {reviewed.content[0].text}")
        for document in reviewed.structured_content["documents"]:
            for finding in document["findings"]:
                where = f"p.{finding['page']}" if finding["page"] else "document"  # a missing clause has no page
                print(f"  finding {where} [{finding['severity']}] {finding['rule']}: {finding['quote'][:60]!r}")
        links = [content for content in reviewed.content if content.type == "resource_link"]
        print("resources: " + ", ".join(str(link.uri) for link in links))
        report = next(link for link in links if link.name == "report.md")
        text = (await session.read_resource(report.uri)).contents[0].text
        print(f"report.md, first line: {text.splitlines()[0]}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    asyncio.run(main(Path(arguments[0]) if arguments else HERE / "review" / "contract.pdf",
                     Path(arguments[1]) if len(arguments) > 1 else HERE / "review" / "contract-rules.md"))
