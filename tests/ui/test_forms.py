"""The web UI's forms against the CLI's flag table: every flag has a field, a form gives the exact command the CLI
parses back to the same values, and a value the CLI refuses shows the CLI's own one-line message on that field."""

from __future__ import annotations

import dataclasses

import pytest

from lmforge import cli
from lmforge.args.parser import flag_specs, parse_flags
from lmforge.ui import forms

FORM_COMMANDS = [c for _, cmds in forms.tabs() for c in cmds]


def _tab_of(command: str) -> tuple[str, ...]:
    return next(cmds for _, cmds in forms.tabs() if command in cmds)


def test_every_cli_flag_has_a_field_with_its_help_choices_and_default():
    for command in ("sft", "pt", "rlhf", "infer", "export", "deploy", "eval"):
        assert command in FORM_COMMANDS
        form = {f.name: f for f in forms.tab_fields(_tab_of(command))}
        specs = {s.name: s for s in flag_specs(cli.COMMANDS[command].groups).values()}
        assert set(specs) <= set(form), f"{command}: no field for {sorted(set(specs) - set(form))}"
        for name, spec in specs.items():
            f = form[name]
            assert f.label == f"--{name}" and spec.help in f.info
            if spec.choices:
                assert {str(c) for c in spec.choices} <= set(f.choices)
        assert any(f.basic for f in form.values()) and any(not f.basic for f in form.values())  # advanced fold away


def test_a_tab_exists_only_for_a_command_that_exists(monkeypatch):
    assert "eval" not in cli.COMMANDS or "eval" in FORM_COMMANDS
    commands = dict(cli.COMMANDS)
    commands.pop("eval", None)
    monkeypatch.setattr(cli, "COMMANDS", commands)
    assert "Eval" not in [t for t, _ in forms.tabs()]
    monkeypatch.setattr(cli, "COMMANDS", {**commands, "eval": cli.COMMANDS["infer"]})
    assert ("Eval", ("eval",)) in forms.tabs()


def _nondefault(f: forms.Field) -> tuple[object, object] | None:
    """(widget value, what the parser should read) for a value other than the flag's default; None to skip."""
    s = f.spec
    if f.widget == "checkbox":
        return (not s.default), (not s.default)
    if f.widget == "tristate":
        return "true", True
    if f.widget in ("dropdown", "multiselect"):
        other = [c for c in s.choices if c != s.default and [c] != s.default][0]
        return ([str(other)], [other]) if s.is_list else (str(other), other)
    if s.kind is int:
        v = (s.default or 0) + 3
        return str(v), [v] if s.is_list else v
    if s.kind is float:
        v = 0.25 if s.default != 0.25 else 0.5
        return str(v), [v] if s.is_list else v
    return ("a 'b c'", ["a", "b c"]) if s.is_list else ("x y", "x y")


@pytest.mark.parametrize("command", FORM_COMMANDS)
def test_form_to_command_for_every_command(command, tmp_path):
    form = forms.tab_fields(_tab_of(command))
    defaults = [f.initial() for f in form]
    assert forms.to_argv(command, form, defaults) == []  # defaults are left out: the shortest exact command
    own = {s.name for s in flag_specs(cli.COMMANDS[command].groups).values()}
    values, expected = list(defaults), {}
    for i, f in enumerate(form):
        pair = _nondefault(f)
        if pair is not None and f.name in own:
            values[i], expected[f.name] = pair
    argv = forms.to_argv(command, form, values)
    parsed = parse_flags(argv, cli.COMMANDS[command].groups).to_dict()
    for name, want in expected.items():
        assert parsed[name] == want, (name, parsed[name], want)
    line = forms.command_line(command, argv)
    assert line.startswith(f"lmforge {command} --") and "'b c'" in line
    config = tmp_path / "config.yaml"
    config.write_text(forms.to_yaml(command, argv))
    from_yaml = parse_flags([str(config)], cli.COMMANDS[command].groups).to_dict()
    assert {k: from_yaml[k] for k in expected} == {k: parsed[k] for k in expected}  # the YAML says the same


def test_a_value_the_cli_refuses_is_shown_on_its_field_in_the_cli_words(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.jsonl"
    data.write_text('{"query": "q", "response": "r"}\n')
    form = forms.tab_fields(("sft", "pt"))
    by_name = {f.name: i for i, f in enumerate(form)}
    values = [f.initial() for f in form]
    values[by_name["dataset"]] = str(data)
    argv, args, problem = forms.check("sft", form, values)
    assert problem is None and args.data.dataset == [str(data)]
    for name, bad in (("lora_rank", "0"), ("learning_rate", "fast"), ("lr_scheduler_type", "bogus"), ("columns", "{")):
        trial = list(values)
        trial[by_name[name]] = bad
        _, _, problem = forms.check("sft", form, trial)
        assert problem is not None and problem.flag == name
        assert cli.main(["sft", *forms.to_argv("sft", form, trial)]) == 2
        assert problem.message == capsys.readouterr().err.strip()  # the CLI's own line, word for word
    values[by_name["dataset"]] = str(tmp_path / "missing.jsonl")  # flagged before anything starts
    _, _, problem = forms.check("sft", form, values)
    assert problem.flag == "dataset" and "no such file" in problem.message


def test_output_key_is_the_resolved_output_dir(tmp_path):
    args = parse_flags(["--output_dir", str(tmp_path / "o")], cli.COMMANDS["sft"].groups)
    assert forms.output_key("sft", args) == str((tmp_path / "o").resolve())
    assert forms.output_key("deploy", parse_flags([], cli.COMMANDS["deploy"].groups)) is None
    assert dataclasses.is_dataclass(forms.Field)


def _argv_of(command: str, **values: object) -> list[str]:
    form = forms.tab_fields(_tab_of(command))
    widget = [values.pop(f.name, f.initial()) for f in form]
    assert not values, f"no such fields: {values}"
    return forms.to_argv(command, form, widget)


def test_export_and_eval_forms_give_the_exact_command_the_cli_accepts(tmp_path):
    ckpt = tmp_path / "v0-x" / "checkpoint-4"
    argv = _argv_of("export", adapters=str(ckpt), quant_method="gptq", quant_bits="4", group_size="32")
    assert forms.command_line("export", argv) == (
        f"lmforge export --adapters {ckpt} --quant_method gptq --quant_bits 4 --group_size 32"
    )
    argv = _argv_of("export", adapters=str(ckpt), merge_lora=True, to_gguf=True, gguf_type="q8_0")
    assert argv == ["--adapters", str(ckpt), "--merge_lora", "true", "--to_gguf", "true", "--gguf_type", "q8_0"]
    assert cli.checked_args("export", ["--model", "m", *argv[2:]]).export.gguf_type == "q8_0"
    # the Eval tab as the page starts it: results under the web UI's output dir, not the server's cwd
    out = str(tmp_path / "output")
    start = forms.page_defaults(("eval",), out)
    argv = _argv_of("eval", adapters=str(ckpt), eval_dataset="lmforge_mcq", eval_limit="2", **start)
    assert argv == ["--adapters", str(ckpt), "--eval_dataset", "lmforge_mcq", "--eval_limit", "2"] + [
        "--eval_output_dir",
        str(tmp_path / "output" / "eval_output"),
    ]
    args = cli.checked_args("eval", ["--model", "m", *argv[2:]])
    assert args.eval.eval_dataset == ["lmforge_mcq"] and args.eval.eval_limit == 2
    _, _, problem = forms.check("eval", forms.tab_fields(("eval",)), _eval_values(eval_dataset="lmforge_mcqq"))
    assert problem.flag == "eval_dataset" and "did you mean lmforge_mcq" in problem.message
    # training tabs write runs into it; export keeps <ckpt>-merged (the runs folder exists: export would refuse)
    assert forms.page_defaults(("sft", "pt"), out) == {"output_dir": out}
    assert forms.page_defaults(("export",), out) == {} == forms.page_defaults(("deploy",), out)


def _eval_values(**values: object) -> list[object]:
    return [values.get(f.name, f.initial()) for f in forms.tab_fields(("eval",))]


def test_form_values_are_kept_per_output_dir(tmp_path):
    from lmforge.ui.form_store import FORM_FILE, FormStore

    form = forms.tab_fields(("sft", "pt"))
    by_name = {f.name: i for i, f in enumerate(form)}
    start = [f.initial() for f in form]
    values = list(start)
    values[by_name["max_steps"]] = "4"
    values[by_name["lr_scheduler_type"]] = "constant"
    values[by_name["packing"]] = True
    store = FormStore(tmp_path / "out")
    store.save("train", "pt", form, start, values)
    again = FormStore(tmp_path / "out")  # a reload, or a restarted server on the same --output_dir
    assert again.load("train", form) == ("pt", {"max_steps": "4", "lr_scheduler_type": "constant", "packing": True})
    assert FormStore(tmp_path / "other").load("train", form) == (None, {})  # another output dir: a fresh form
    store.save("train", "sft", form, start, start)  # back to the defaults: nothing left to restore
    assert again.load("train", form) == ("sft", {})
    path = tmp_path / "out" / FORM_FILE
    path.write_text(
        '{"train": {"command": "sft", "values": {"packing": "yes", "lr_scheduler_type": "bogus", '
        '"max_steps": "7", "gone_flag": "1"}}}'
    )
    assert again.load("train", form) == ("sft", {"max_steps": "7"})  # a stale or edited file breaks no field
    path.write_text("not json")
    assert again.load("train", form) == (None, {})
