"""Process declarations: one declaration per process, everything else checked against it."""
import importlib
import re
from pathlib import Path

import numba
import numpy as np
import pytest

import engine.schedule as schedule
from engine.rules import build_rules
from engine.scenario import load_scenario
from engine.state import allocate
from kernels.cuda import KERNEL_DIR, source_text
from kernels.process import PROCESSES, DeclarationError, Process, prototype

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_constants_of_every_process_equal_its_declaration():
    declared = [p for p in PROCESSES.values() if p.events or p.streams]
    assert {"fate", "division", "displacement", "angiogenesis", "regression"} <= {
        p.name for p in declared}
    for p in declared:
        module = importlib.import_module(p.module)
        for name, value in p.constants().items():
            assert getattr(module, name) == value, f"{p.module}.{name}"


def test_generated_c_constants_precede_the_source_they_belong_to():
    text = source_text("division.cu")
    assert "constexpr int BIRTH_TUMOR = 0;" in text and "constexpr u32 STREAM_DIVISION = 2;" in text
    assert text.index("STREAM_DIVISION = 2") < text.index('#line 1 "division.cu"')


def test_every_entry_of_a_declared_source_has_a_numba_twin():
    for p in PROCESSES.values():
        if p.source is None:
            continue
        entries = re.findall(r"OL_ENTRY\s+(\w+)\s*\(", (KERNEL_DIR / p.source).read_text())
        assert sorted(entries) == sorted(p.entries), p.source


def test_a_numba_twin_that_drifts_from_its_prototype_fails_at_declaration():
    p = Process("drift-test", "fate.cu")
    try:
        with pytest.raises(DeclarationError, match="declares"):
            @p.entry("decide_fate")
            @numba.njit
            def twin(kind, organ):          # far fewer parameters than fate.cu declares
                pass
    finally:
        del PROCESSES["drift-test"]


def test_stream_ids_are_unique_across_processes():
    with pytest.raises(DeclarationError, match="already"):
        Process("stream-clash-test", streams={"again": 2})   # division's stream
    assert "stream-clash-test" not in PROCESSES


def test_arguments_of_the_wrong_type_are_refused_not_launched():
    from kernels.fate import FATE
    entry = FATE.entries["decide_fate"]
    rules = build_rules(load_scenario("quickstart"))
    lat = allocate("t", 0, "numba", (4, 4, 4))
    with pytest.raises(DeclarationError, match="oxygen"):
        entry(lat, rules, 1, oxygen=np.zeros((4, 4, 4), dtype=np.float64))
    with pytest.raises(DeclarationError, match="necrosis_mmHg"):
        entry(lat, rules, 1, necrosis_mmHg=0.1)            # not exactly a float32
    with pytest.raises(DeclarationError, match="step"):
        entry(lat, rules, -1)                              # u32
    assert prototype("fate.cu", "decide_fate")[0].name == "kind"


def test_events_table_rows_follow_the_schedule():
    lat = allocate("t", 0, "numba", (3, 4, 5))
    assert lat.events.shape == (len(schedule.EVENT_NAMES), 3)
    layout = schedule.event_layout()
    names = [e for p in schedule.EVENT_PROCESSES for e in p.events]
    assert tuple(names) == schedule.EVENT_NAMES
    for p in schedule.EVENT_PROCESSES:
        assert schedule.EVENT_NAMES[layout[p.name]] == p.events


def test_readme_shows_the_schedule_as_the_code_runs_it():
    text = README.read_text()
    assert schedule.BEGIN + "\n" + schedule.pass_table() + schedule.END in text, \
        "README pass table is stale: run python -m engine.schedule --update-readme"


def test_readme_shows_the_voxel_arrays_as_declared():
    from engine.state import BYTES_PER_VOXEL, state_table
    text = README.read_text()
    assert "<!-- state table: engine.state.state_table() -->\n" + state_table() in text
    # 1024^3 with room on an 80 GB GPU: a quarter of it left for the CUDA context, the memory
    # pool and a step's small temporaries (the work buffers are in BYTES_PER_VOXEL).  Until
    # issue 12 the bound was half the GPU; the chemotherapy drug field (4 bytes) and the
    # immune process's chemokine field and cell state (7 bytes, its work arrays shared with
    # migration's) took the lattice past it.
    assert BYTES_PER_VOXEL * 1024**3 < 80e9 * 0.75


def test_readme_layout_names_every_process_module():
    """The README's layout section lists every module that declares a process."""
    import sys
    from kernels.process import PROCESSES
    layout = README.read_text().partition("## Layout")[2].partition("\n## ")[0]
    for process in PROCESSES.values():
        module = sys.modules[process.module].__name__.rpartition(".")[2]
        if process.module.startswith("kernels.") and module != "lattice":
            assert module in layout, f"README layout does not name kernels/{module}.py"


def test_the_field_solvers_launch_is_checked_against_its_prototype():
    """The field solver launches its CUDA entry itself (batched sweeps); its tuple is
    still built by name from field.cu's prototype and every dtype checked."""
    import numpy as np
    from kernels.process import DeclarationError, launch_args, prototype
    args = prototype("field.cu", "relax_field_colour")
    good = {a.name: (np.zeros(2, a.dtype) if a.pointer else a.dtype.type(1)) for a in args}
    assert len(launch_args("field.cu", "relax_field_colour", good)) == len(args)
    with pytest.raises(DeclarationError, match="float \\*f got float64"):
        launch_args("field.cu", "relax_field_colour", {**good, "f": np.zeros(2)})
    with pytest.raises(DeclarationError, match="no value for omega"):
        launch_args("field.cu", "relax_field_colour",
                    {k: v for k, v in good.items() if k != "omega"})
