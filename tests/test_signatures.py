"""One definition of each setting: the API's explicit parameters are the config fields (names and
defaults), the command line's flags are built from the same fields, and the docs name only flags the
parsers have and API functions and parameters that exist."""

import dataclasses
import inspect
import os
import re

import pytest

import catdog
from catdog import commands
from catdog.config import (
    AuditConfig,
    ExtractConfig,
    HeadConfig,
    ReportConfig,
    SearchConfig,
    SimilarConfig,
    TrainConfig,
)

DOCS = os.path.join(os.path.dirname(__file__), "..")
FUNCTIONS = [(catdog.extract, ExtractConfig, ()), (catdog.estimate, ExtractConfig, ("out",)),
             (catdog.fit_head, HeadConfig, ()), (catdog.similar, SimilarConfig, ()), (catdog.audit, AuditConfig, ()),
             (catdog.fit_e2e, TrainConfig, ()), (catdog.report, ReportConfig, ()), (catdog.search, SearchConfig, ())]
COMMANDS = {"extract": ExtractConfig, "head": HeadConfig, "similar": SimilarConfig, "audit": AuditConfig,
            "train-e2e": TrainConfig, "report": ReportConfig, "search": SearchConfig}


@pytest.mark.parametrize("function, cls, skip", FUNCTIONS, ids=lambda x: getattr(x, "__name__", ""))
def test_api_parameters_are_the_config_fields(function, cls, skip):
    parameters = inspect.signature(function).parameters
    assert all(p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in parameters.values())
    fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in skip}
    assert set(parameters) == set(fields)
    required = [p for p in parameters.values() if p.default is p.empty]
    assert all(p.kind == p.POSITIONAL_OR_KEYWORD for p in required)
    assert all(p.kind == p.KEYWORD_ONLY for p in parameters.values() if p.default is not p.empty)
    for name, default in fields.items():
        expected = inspect.Parameter.empty if default is dataclasses.MISSING else default
        assert parameters[name].default == expected, name
        assert f"    {name} : " in function.__doc__  # named in the docstring, with its help
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls))


def _parsers() -> dict:
    parser = commands.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


@pytest.mark.parametrize("command, cls", COMMANDS.items())
def test_every_setting_has_its_flag_with_the_config_default(command, cls):
    actions = {a.dest: a for a in _parsers()[command]._actions}
    for field in dataclasses.fields(cls):
        if field.metadata.get("flag") is False or field.name in ("root", "out") and command == "extract":
            continue
        assert field.name in actions, f"{command}: no flag for {field.name}"
        if field.default is not dataclasses.MISSING:
            assert actions[field.name].default == field.default, field.name
        assert field.metadata["help"] in (actions[field.name].help or "").replace("not: ", ""), field.name


def _doc_files():
    yield os.path.join(DOCS, "README.md")
    for name in sorted(os.listdir(os.path.join(DOCS, "docs"))):
        if name.endswith(".md"):
            yield os.path.join(DOCS, "docs", name)


def test_every_flag_the_docs_name_is_a_flag_of_some_command():
    known = {"--help", "--verbose"}
    for parser in _parsers().values():
        for action in parser._actions:
            known.update(action.option_strings)
    # Flags of the tools the docs show beside catdog's (ray, pip, pytest, docker, ...).
    others = {"--working-dir", "--address", "--head", "--port", "--block", "--num-cpus", "--num-gpus", "--resources",
              "--no-cache-dir", "--upgrade", "--durations", "--timeout", "--dashboard-port", "--include-dashboard",
              "--headless", "--no-sandbox", "--runtime-env-json", "--submission-id", "--no-wait", "--quiet",
              "--ray-client-server-port", "--node-manager-port", "--object-manager-port", "--min-worker-port",
              "--max-worker-port", "--dashboard-agent-listen-port", "--gcs-server-port", "--metrics-export-port",
              "--runtime-env-agent-port", "--dashboard-agent-grpc-port", "--disable-usage-stats", "--force",
              "--follow", "--generate", "--mount"}
    for script in os.listdir(os.path.join(DOCS, "benchmarks")):  # the benchmark scripts' own flags
        if script.endswith(".py"):
            others.update(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", open(os.path.join(DOCS, "benchmarks", script)).read()))
    unknown = {}
    for path in _doc_files():
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", open(path).read()):
            if flag not in known and flag not in others:
                unknown.setdefault(flag, os.path.basename(path))
    assert unknown == {}, unknown


def test_every_api_name_in_docs_api_md_exists_with_its_parameters():
    text = open(os.path.join(DOCS, "docs", "api.md")).read()
    for name, arguments in re.findall(r"catdog\.(\w+)\(([^()]*)\)", text):
        assert hasattr(catdog, name), name
        function = getattr(catdog, name)
        if not callable(function) or not inspect.isfunction(function):
            continue
        parameters = inspect.signature(function).parameters
        for keyword in re.findall(r"(\w+)=", arguments):
            assert keyword in parameters, f"catdog.{name}({keyword}=...) in docs/api.md"
