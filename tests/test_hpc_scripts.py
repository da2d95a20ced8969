"""The Slurm job scripts of examples/slurm/ (docs/hpc.md): each is valid bash, and every
`oncolattice` command in them names a sub-command the CLI has and parses with its flags.
The checkpoint commands (`resume`, `run --checkpoint-every`) are checked only where this
CLI has them; else that check is skipped with the reason."""
import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.errors import UserError

SLURM = Path(__file__).resolve().parents[1] / "examples" / "slurm"
SCRIPTS = sorted(p for p in SLURM.iterdir() if p.is_file())
CHECKPOINT_FLAGS = ("--checkpoint-every", "--checkpoint")


def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions
                if isinstance(a, argparse._SubParsersAction)).choices


def arrays() -> dict[str, str]:
    """The bash arrays the scripts define (NAME=(...)), by name."""
    found = {}
    for script in SCRIPTS:
        found.update(re.findall(r"^(\w+)=\((.*)\)\s*$", script.read_text(), re.M))
    return found


def invocations() -> list[tuple[str, list[str]]]:
    """(script, the arguments after `oncolattice`) of every oncolattice command line, with
    continuation lines joined, arrays spelled out and other variables set to 1."""
    found, defined = [], arrays()
    for script in SCRIPTS:
        text = script.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            if not re.search(r"(^|\s)oncolattice\s", code) or code.lstrip().startswith("echo"):
                continue
            code = re.sub(r'"\$\{(\w+)\[@\]\}"', lambda m: defined[m[1]], code)
            code = re.sub(r"\$\{[^}]*\}|\$\(\([^)]*\)\)|\$\w+", "1", code)
            words = shlex.split(code)
            args = words[words.index("oncolattice") + 1:]
            found.append((script.name, [w for w in args if w != "&"]))
    return found


def needs_checkpoints(args: list[str]) -> bool:
    return args[0] == "resume" or any(a in CHECKPOINT_FLAGS for a in args)


def without_checkpoints(args: list[str]) -> list[str]:
    """`args` less the checkpoint flags and their values."""
    out, skip = [], False
    for a in args:
        if not skip and a not in CHECKPOINT_FLAGS:
            out.append(a)
        skip = a in CHECKPOINT_FLAGS
    return out


def has_checkpoints() -> str | None:
    """None where this CLI has `resume` and `run --checkpoint-every`, else why not."""
    commands = subcommands()
    if "resume" not in commands:
        return "`oncolattice resume` is not in this CLI yet (the checkpoint branch adds it)"
    flags = {o for a in commands["run"]._actions for o in a.option_strings}
    if "--checkpoint-every" not in flags:
        return "`oncolattice run --checkpoint-every` is not in this CLI yet"
    return None


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_is_valid_bash(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_scripts_cover_every_way_to_run():
    used = {(name, args[0]) for name, args in invocations()}
    assert ("run-1gpu.sbatch", "run") in used
    assert ("run-1node-8gpu.sbatch", "run") in used and ("run-multinode.sbatch", "run") in used
    assert ("ensemble-array.sbatch", "ensemble") in used
    assert ("ensemble-collect.sbatch", "ensemble") in used
    assert ("run-chain.sbatch", "resume") in used
    chain = (SLURM / "run-chain.sbatch").read_text()
    assert "#SBATCH --signal=B:USR1@300" in chain and "sbatch " in chain
    assert "--member" in (SLURM / "ensemble-array.sbatch").read_text()
    assert '--dependency="afterany:' in (SLURM / "ensemble-submit.sh").read_text()


def test_the_submit_script_sizes_the_array_and_queues_collect_after_it(tmp_path):
    """ensemble-submit.sh with a stand-in sbatch: an array of REPLICATES x sweep points
    tasks, and the collect job depending on the array."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text('#!/bin/bash\necho "$*" >> "$SBATCH_LOG"\necho $(( 100 + $(wc -l < "$SBATCH_LOG") ))\n')
    fake.chmod(0o755)
    log = tmp_path / "sbatch.log"
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "SBATCH_LOG": str(log), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(SLURM / "ensemble-submit.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    array, collect = log.read_text().splitlines()
    assert array.startswith("--parsable --array=0-31%50 ")        # 8 replicates x 2 x 2
    assert collect.startswith("--parsable --dependency=afterany:101 ")
    assert "ensemble of 32 members: array job 101, collect job 102" in done.stdout


def test_every_oncolattice_command_parses():
    commands = subcommands()
    parser = build_parser()
    checked = 0
    for name, args in invocations():
        if args[0] == "resume":
            continue                # test_checkpoint_commands_parse
        args = without_checkpoints(args)
        assert args[0] in commands, f"{name}: oncolattice {args[0]} is no sub-command"
        try:
            parser.parse_args(args)
        except UserError as exc:
            pytest.fail(f"{name}: oncolattice {shlex.join(args)}: {exc}")
        checked += 1
    assert checked == 6


def test_the_ensemble_sweeps_are_scenario_keys():
    from engine.ensemble import check_sweep, parse_sweeps, sweep_points
    from engine.scenario import load_scenario
    conf = (SLURM / "ensemble.conf").read_text()
    scenario = re.search(r"^SCENARIO=(\S+)", conf, re.M)[1]
    flags = shlex.split(arrays()["SWEEPS"])
    sweep = parse_sweeps(flags[1::2])
    check_sweep(load_scenario(scenario), sweep, sweep_points(sweep))


def test_checkpoint_commands_parse():
    if (why := has_checkpoints()) is not None:
        pytest.skip(why)
    parser = build_parser()
    for name, args in invocations():
        if needs_checkpoints(args):
            try:
                parser.parse_args(args)
            except UserError as exc:
                pytest.fail(f"{name}: oncolattice {shlex.join(args)}: {exc}")
