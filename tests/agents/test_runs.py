"""tilepilot.agents.runs.Run: the manifest, the one event vocabulary, the deadline, checkpoint pruning, progress."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from rich.console import Console

from tilepilot.agents.checkpoints import BACKUP_SUFFIX, prune_thread, recover_thread
from tilepilot.agents.errors import RunError
from tilepilot.agents.progress import ConsoleProgress
from tilepilot.agents.runs import (
    EVENTS_NAME, FINISH_STATUSES, MANIFEST_NAME, RUN_FINISHED, RUN_RESUMED, RUN_STARTED, Deadline, DeadlineReached, Run,
    read_events, read_options,
)


class Options(BaseModel):
    size: int = 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _kinds(folder: Path) -> list[str]:
    return [e["kind"] for e in read_events(folder / EVENTS_NAME)]


def test_start_finish_and_resume_share_one_vocabulary(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with Run.open("review", Options(size=5), out=folder, extra="x") as run:
        run.emit("chunk_done", chunk="a")
        run.finish("done", pages=2)
    assert read_options("review", folder, Options) == Options(size=5)
    with Run.open("review", Options(size=5), resume=folder):
        pass  # left without finish(): a clean exit records nothing more
    events = list(read_events(folder / EVENTS_NAME))
    assert [e["kind"] for e in events] == [RUN_STARTED, "chunk_done", RUN_FINISHED, RUN_RESUMED]
    assert events[0]["agent"] == "review" and events[0]["options"] == {"size": 5} and events[0]["extra"] == "x"
    assert events[2]["status"] == "done" and events[2]["pages"] == 2 and events[2]["seconds"] >= 0
    assert set(FINISH_STATUSES) >= {"done", "deadline", "error", "interrupted"}


@pytest.mark.parametrize("error, status", [(DeadlineReached("late"), "deadline"), (KeyboardInterrupt(), "interrupted"),
                                           (ValueError("broken\nline"), "error")])
def test_an_exception_finishes_the_run_with_its_status(tmp_path: Path, error: BaseException, status: str) -> None:
    with pytest.raises(type(error)):
        with Run.open("listen", Options(), out=tmp_path / "run"):
            raise error
    last = list(read_events(tmp_path / "run" / EVENTS_NAME))[-1]
    assert last["kind"] == RUN_FINISHED and last["status"] == status and "\n" not in last["reason"]


def test_resume_checks_the_folder_and_the_agent(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run folder"):
        read_options("desktop", tmp_path / "missing", Options)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="not a run folder"):
        read_options("desktop", tmp_path / "empty", Options)
    with Run.open("listen", Options(), out=tmp_path / "run"):
        pass
    with pytest.raises(RunError, match="holds a listen run"):
        read_options("desktop", tmp_path / "run", Options)
    for damaged in (b"{not json", b"\xff\xfe not UTF-8"):
        (tmp_path / "run" / MANIFEST_NAME).write_bytes(damaged)
        with pytest.raises(RunError, match="unreadable"):
            read_options("listen", tmp_path / "run", Options)
    with pytest.raises(RunError, match="not empty"):
        Run.open("listen", Options(), out=tmp_path / "run")


def test_deadline_is_the_smaller_limit_and_says_how_to_go_on(tmp_path: Path) -> None:
    clock = FakeClock()
    assert Deadline.of(None, None).limit_s is None and not Deadline.of(None, None).expired()
    deadline = Deadline.of(30.0, 10.0, clock)
    assert (deadline.limit_s, deadline.source) == (10.0, "limits.max_runtime_s in the rules")
    assert Deadline.of(5.0, 10.0, clock).source == "--max-runtime"
    with Run.open("desktop", Options(), out=tmp_path / "run", deadline=deadline) as run:
        clock.now += 9.9
        run.deadline.check()
        clock.now += 0.1
        with pytest.raises(DeadlineReached) as caught:
            run.deadline.check()
    message = str(caught.value)
    assert "10 s time limit" in message and f"tilepilot desktop --resume {tmp_path / 'run'}" in message
    assert caught.value.exit_code == 6


class Loop(TypedDict, total=False):
    items: Annotated[list[int], operator.add]
    n: int


def _loop_graph(saver, steps: int):
    graph = StateGraph(Loop)
    graph.add_node("step", lambda s: {"items": [s.get("n", 0)], "n": s.get("n", 0) + 1})
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["n"] < steps else END, ["step", END])
    return graph.compile(checkpointer=saver)


def _checkpoints(saver, thread_id: str) -> int:
    return len(list(saver.list({"configurable": {"thread_id": thread_id}})))


def test_drive_prunes_to_the_newest_checkpoint_between_supersteps(tmp_path: Path) -> None:
    with Run.open("review", Options(), out=tmp_path / "run") as run:
        app = _loop_graph(run.checkpointer(), 12)
        final = run.drive(app, {"n": 0}, run.thread("t"), pause_after=["step"])
        assert final.values["items"] == list(range(12)) and not final.next
        assert _checkpoints(run.checkpointer(), "t") == 1
        plain = app.invoke({"n": 0}, run.thread("u"))  # the same graph, left to LangGraph alone
        assert plain == final.values and _checkpoints(run.checkpointer(), "u") > 12


class KilledAt(Exception):
    pass


@pytest.mark.parametrize("kill_after", range(1, 7))
def test_a_prune_killed_at_any_call_is_repaired(tmp_path: Path, kill_after: int) -> None:
    """Kill the prune after each of its saver calls; recovery must leave the thread resumable, unchanged."""
    with Run.open("review", Options(), out=tmp_path / "run") as run:
        saver = run.checkpointer()
        app = _loop_graph(saver, 8)
        config = run.thread("t")
        for _ in app.stream({"n": 0}, config, interrupt_after=["step"], durability="sync"):
            pass
        for _ in range(3):
            for _ in app.stream(None, config, interrupt_after=["step"], durability="sync"):
                pass
        before = app.get_state(config).values
        calls = {"n": 0}
        originals = {name: getattr(saver, name) for name in ("put", "put_writes", "delete_thread")}

        def counted(name):
            def call(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] > kill_after:
                    raise KilledAt(name)
                return originals[name](*args, **kwargs)
            return call

        for name in originals:
            setattr(saver, name, counted(name))
        try:
            prune_thread(saver, "t")
        except KilledAt:
            pass
        for name, method in originals.items():
            setattr(saver, name, method)
        recover_thread(saver, "t")
        assert saver.get_tuple({"configurable": {"thread_id": "t" + BACKUP_SUFFIX}}) is None
        assert app.get_state(config).values == before
        final = run.drive(app, None, config, pause_after=["step"])
        assert final.values["items"] == list(range(8))


def test_plain_progress_prints_periodic_lines_and_a_last_one(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "log.txt"
    with open(path, "w") as handle:
        sink = ConsoleProgress(Console(file=handle, width=200), every_s=10, clock=clock, terminal=False)
        sink.start("review", 40, "pages")
        for done in range(1, 41):
            clock.now += 1
            sink.update(done)
        sink.close()
        failed = ConsoleProgress(Console(file=handle, width=200), every_s=10, clock=clock, terminal=False)
        failed.start("listen", None, "s")
        failed.update(3)
        failed.close(ok=False)
    lines = path.read_text().splitlines()
    assert lines == [f"review: {n}/40 pages ({n * 100 // 40}%) after {n} s" for n in (10, 20, 30, 40)]


def test_the_audit_log_writes_through_the_event_writer(tmp_path: Path) -> None:
    from tilepilot.agents.rules import AuditLog, GuardContext, ScreenBounds, build_policy, guard
    from tilepilot.tools.actions import Click

    policy = build_policy("desktop")
    log = AuditLog(tmp_path / "audit.jsonl", agent="desktop")
    context = GuardContext(agent="desktop", screen=ScreenBounds(left=0, top=0, width=100, height=100), step=0)
    log.record(Click(x=5, y=5), guard(Click(x=5, y=5), context, policy), 0)
    (event,) = read_events(tmp_path / "audit.jsonl")
    assert event["kind"] == "guard" and event["verdict"] == log.entries()[0].verdict and "t" in event


@pytest.mark.parametrize("agent, inputs", [("review", ["x.pdf"]), ("desktop", ["a task"]), ("listen", ["x.wav"])])
def test_every_agent_takes_resume_with_the_same_rules(agent: str, inputs: list[str], tmp_path: Path) -> None:
    from tests.conftest import tilepilot

    with Run.open(agent, Options(), out=tmp_path / "run"):
        pass
    for args, message in ((["--resume", str(tmp_path / "run"), *inputs], "--resume continues a run with its own inputs"),
                          (["--resume", str(tmp_path / "run"), "--out", str(tmp_path / "x")], "drop --out"),
                          ([], "(or --resume RUN)"),
                          (["--resume", str(tmp_path / "nope")], "no such run folder")):
        proc = tilepilot(agent, *args, env={"TILEPILOT_BASE_URL": "http://127.0.0.1:9"})
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (args, proc.stderr)


def test_every_agent_logs_the_same_lifecycle(tmp_path: Path) -> None:
    """Review, desktop and listen, each to its end offline: run_started first, run_finished(done) last."""
    from tilepilot.agents.desktop.runner import run_desktop
    from tilepilot.agents.desktop.screen_texts import StaticTexts
    from tilepilot.agents.desktop.state import DesktopOptions
    from tilepilot.agents.listen.agent import ListenAgent
    from tilepilot.agents.review.runner import ReviewOptions, run_review
    from tilepilot.agents.rules import build_policy
    from tests.agents.desktop.doubles import ScriptedChat, fixed
    from tests.agents.desktop.test_loop_offline import SCREEN, FakeScreen, RecordingExecutor
    from tests.agents.doubles import WordChat
    from tests.gen.audio import AudioFactory
    from tests.gen.pdfs import digital_pdf
    from tilepilot.tools.actions import Done

    run_review(ReviewOptions(paths=[str(digital_pdf(tmp_path / "doc.pdf"))], no_model=True), out=tmp_path / "review",
               progress=None)
    run_desktop(DesktopOptions(task="t", settle_ms=0), ScriptedChat([fixed(Done())], screen=SCREEN),
                build_policy("desktop"), tmp_path / "desktop", texts=StaticTexts(), screen=FakeScreen(),
                executor=RecordingExecutor())
    with Run.open("listen", Options(), out=tmp_path / "listen") as run:
        speech = AudioFactory(tmp_path / "audio").speech("One two three.")
        ListenAgent(WordChat(), build_policy("listen"), workers=1).run(speech, run)
        run.finish("done")
    for agent in ("review", "desktop", "listen"):
        kinds = _kinds(tmp_path / agent)
        assert kinds[0] == RUN_STARTED and kinds[-1] == RUN_FINISHED and kinds.count(RUN_FINISHED) == 1, (agent, kinds)
        assert list(read_events(tmp_path / agent / EVENTS_NAME, RUN_FINISHED))[0]["status"] == "done"



@pytest.mark.integration
def test_a_run_logs_the_client_it_is_given_whichever_thread_connected_it(vllm_server, tmp_path: Path) -> None:
    """The client is handed to the run explicitly: a run opened in another thread than the one that connected
    logs that client's probe and what it learns later, a run given no client logs none, and a closed run
    lets go of the client."""
    import threading

    from PIL import Image

    from tilepilot.agents.backend import connect
    from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart

    with connect(vllm_server.profile.name, [vllm_server.base_url], quiet=True) as client:
        unrelated = Run.open("review", Options(), out=tmp_path / "unrelated")  # this thread's, given no client
        folders: list[Path] = []

        def work() -> None:
            with Run.open("review", Options(), out=tmp_path / "worker", client=client) as run:
                # The first image request tells the client whether the server honours image budgets.
                image = Image.new("RGB", (96, 96), "white")
                client.chat([Message(role="user", parts=[ImagePart(image=image), TextPart(text="Hi")])], max_tokens=2)
                run.finish("done")
                folders.append(run.dir)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        assert client.on_event is None  # the worker's run closed
        unrelated.finish("done")
        unrelated.close()
    probe = next(read_events(folders[0] / EVENTS_NAME, "server_probe"))
    assert probe["served_id"] == client.model and probe["exact"] is True
    learned = list(read_events(folders[0] / EVENTS_NAME, "server_capability"))
    assert [e["images"] for e in learned] == ["honoured"], learned
    assert {"server_probe", "server_capability"}.isdisjoint(_kinds(tmp_path / "unrelated"))
